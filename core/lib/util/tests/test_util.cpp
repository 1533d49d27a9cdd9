// The shared helpers of core/lib/util: SHA-256 against FIPS 180-4's examples and Python's hashlib, and atomic
// whole-file writes (the old file or the new one, never half of either, and no temporary left behind).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/sha256.h"

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("mmr_util_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST(Sha256, MatchesFipsExamplesAndPaddingBoundaries) {
  using mmr::sha256_hex;
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Lengths around the padding boundary (55, 56 and 64 bytes); digests from Python's hashlib.
  EXPECT_EQ(sha256_hex(std::string(55, 'x')), "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072");
  EXPECT_EQ(sha256_hex(std::string(56, 'y')), "4877e564e5e36e367c7c8d59670774becd3350610b6df4c399c9fa9b66da5813");
  EXPECT_EQ(sha256_hex(std::string(64, 'z')), "72996563049cc84daa2c3f31fd5c3d10770e69d6ebbb8da5b6d76db303dbae43");
}

TEST(AtomicFile, ReplacesTheFileAndLeavesNoTemporary) {
  const fs::path dir = fresh_dir("atomic");
  const fs::path target = dir / "sub" / "file.txt";
  mmr::write_file_atomic(target, "first");
  mmr::write_file_atomic(target, "second version");
  EXPECT_EQ(mmr::read_file(target), "second version");
  EXPECT_FALSE(fs::exists(mmr::temp_path_for(target)));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir / "sub")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);
}

TEST(AtomicFile, UnwritablePlaceIsIoErrorNamingThePath) {
  const fs::path dir = fresh_dir("atomic_bad");
  mmr::write_file_atomic(dir / "plain", "x");
  const fs::path impossible = dir / "plain" / "child.txt";  // parent is a regular file
  try {
    mmr::write_file_atomic(impossible, "data");
    FAIL() << "expected IoError";
  } catch (const mmr::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("child.txt"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(mmr::temp_path_for(impossible)));
}

TEST(AtomicFile, StreamCommitReplacesAndAnAbandonedOneLeavesNothing) {
  const fs::path dir = fresh_dir("atomic_stream");
  const fs::path target = dir / "out.json";
  mmr::write_file_atomic(target, "old");
  {
    mmr::AtomicFile f(target);
    f.stream() << "new";
    f.commit();
  }
  EXPECT_EQ(mmr::read_file(target), "new");
  {
    mmr::AtomicFile f(target);
    f.stream() << "never committed";
  }  // an exception on the way would leave it like this
  EXPECT_EQ(mmr::read_file(target), "new");
  EXPECT_FALSE(fs::exists(mmr::temp_path_for(target)));
}
