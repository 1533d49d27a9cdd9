// The shared helpers of core/lib/util: SHA-256 against FIPS 180-4's examples and Python's hashlib, base64 against
// RFC 4648's vectors and each caller's rules (runner serve's and Python's b64decode), and atomic whole-file writes
// (the old file or the new one, never half of either, and no temporary left behind).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/base64.h"
#include "core/lib/util/json_safe.h"
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

namespace {

using mmr::Base64Rules;

// The Base64Error message of decoding `text` ("" when it decodes).
std::string base64_error(const std::string& text, Base64Rules rules) {
  try {
    mmr::base64_decode(text, rules);
  } catch (const mmr::Base64Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Base64, EncodesAndDecodesTheRfc4648VectorsUnderBothRules) {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"}};
  for (const auto& [bytes, text] : vectors) {
    EXPECT_EQ(mmr::base64_encode(bytes), text);
    // The padding's zero bytes, which EVP_DecodeBlock counts, are not data.
    EXPECT_EQ(mmr::base64_decode(text, Base64Rules::kStrict), bytes) << text;
    EXPECT_EQ(mmr::base64_decode(text, Base64Rules::kPython), bytes) << text;
  }
  EXPECT_EQ(mmr::base64_decode("//79", Base64Rules::kStrict), std::string("\xff\xfe\xfd", 3));
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n : {size_t{254}, size_t{255}, size_t{256}}) {
    EXPECT_EQ(mmr::base64_decode(mmr::base64_encode(all.substr(0, n)), Base64Rules::kStrict), all.substr(0, n));
    EXPECT_EQ(mmr::base64_decode(mmr::base64_encode(all.substr(0, n)), Base64Rules::kPython), all.substr(0, n));
  }
  // Longer than one line of PEM (EVP_EncodeBlock writes no newlines) and a few MB, for the chunking.
  const std::string big(5'000'001, 'x');
  const std::string encoded = mmr::base64_encode(big);
  EXPECT_EQ(encoded.find('\n'), std::string::npos);
  EXPECT_EQ(encoded.size(), (big.size() + 2) / 3 * 4);
  EXPECT_EQ(mmr::base64_decode(encoded, Base64Rules::kStrict), big);
}

TEST(Base64, StrictRulesSkipWhitespaceAllowMissingPaddingAndNameBadCharacters) {
  EXPECT_EQ(mmr::base64_decode("Zm9v\nYmFy", Base64Rules::kStrict), "foobar");
  EXPECT_EQ(mmr::base64_decode(" Zm9v\r\n\tYmE=\n", Base64Rules::kStrict), "fooba");
  EXPECT_EQ(mmr::base64_decode("Zg", Base64Rules::kStrict), "f");    // padding left out
  EXPECT_EQ(mmr::base64_decode("Zm8", Base64Rules::kStrict), "fo");
  EXPECT_EQ(mmr::base64_decode("Zm9v==", Base64Rules::kStrict), "foo");   // as runner serve always read it
  EXPECT_EQ(base64_error("Zm$v", Base64Rules::kStrict), "base64: invalid character '$' at offset 2");
  EXPECT_EQ(base64_error("Zm9v!", Base64Rules::kStrict), "base64: invalid character '!' at offset 4");
  EXPECT_EQ(base64_error("Zg==Zg==", Base64Rules::kStrict), "base64: data after '=' padding at offset 4");
  EXPECT_EQ(base64_error("Zm9vY", Base64Rules::kStrict), "base64: truncated input (a final group of one character)");
  EXPECT_EQ(base64_error("Zg===", Base64Rules::kStrict), "base64: more than two '=' padding characters");
  EXPECT_EQ(base64_error("Zm-9", Base64Rules::kStrict), "base64: invalid character '-' at offset 2");   // not base64url
}

TEST(Base64, PythonRulesAreThoseOfB64decode) {
  // Each expectation is what CPython 3.11's base64.b64decode(text) returns or raises.
  EXPECT_EQ(mmr::base64_decode("aGVs\nbG8h", Base64Rules::kPython), "hello!");
  EXPECT_EQ(mmr::base64_decode("aG$Vs!bG8h", Base64Rules::kPython), "hello!");   // other characters are skipped
  EXPECT_EQ(mmr::base64_decode("Zg==Zm9v", Base64Rules::kPython), "f");          // the padding ends the data
  EXPECT_EQ(mmr::base64_decode("Zm=9v", Base64Rules::kPython), "foo");           // a '=' inside a group is skipped
  EXPECT_EQ(mmr::base64_decode("=Zm9v", Base64Rules::kPython), "foo");
  EXPECT_EQ(base64_error("Zg", Base64Rules::kPython), "Incorrect padding");
  EXPECT_EQ(base64_error("Zg=", Base64Rules::kPython), "Incorrect padding");
  EXPECT_EQ(base64_error("aGV$", Base64Rules::kPython), "Incorrect padding");
  EXPECT_EQ(base64_error("Zm9vY", Base64Rules::kPython),
            "Invalid base64-encoded string: number of data characters (5) cannot be 1 more than a multiple of 4");
  EXPECT_EQ(base64_error("Zm9v\xc3\xa9", Base64Rules::kPython), "string argument should contain only ASCII characters");
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

TEST(AtomicFile, StaleTemporariesOfGoneProcessesAreRemovedLiveOnesAndOtherFilesKept) {
  const fs::path dir = fresh_dir("atomic_stale");
  // A process that is gone: a child that exited (its pid is free until reused; reuse only keeps a file).
  const pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  waitpid(child, &status, 0);
  const std::string gone = std::to_string(child), mine = std::to_string(getpid());
  const std::vector<std::string> names = {".rows.jsonl." + gone + ".tmp", "sub/.state.json." + gone + ".tmp",
                                         ".adapter_model.safetensors.tmp." + gone + ".0", ".rows.jsonl." + mine + ".tmp",
                                         "step-0000002.tmp", ".x.12ab.tmp", "rows.jsonl"};
  for (const std::string& name : names) {
    fs::create_directories((dir / name).parent_path());
    std::ofstream(dir / name) << "half";
  }
  EXPECT_EQ(mmr::remove_stale_temporaries(dir), 3);
  EXPECT_FALSE(fs::exists(dir / (".adapter_model.safetensors.tmp." + gone + ".0")));
  EXPECT_FALSE(fs::exists(dir / (".rows.jsonl." + gone + ".tmp")));
  EXPECT_FALSE(fs::exists(dir / "sub" / (".state.json." + gone + ".tmp")));
  for (const std::string& kept : {names[3], names[4], names[5], names[6]})
    EXPECT_TRUE(fs::exists(dir / kept)) << kept;
  fs::remove_all(dir);
}

// Found by fuzz/fuzz_rows and fuzz_chat_request: nlohmann reports a number too large for a double as out_of_range,
// which callers that catch parse errors (serve's 400, the row readers) let through. It is a parse error here.
TEST(JsonSafe, ANumberPastADoublesRangeIsAParseErrorSayingWhich) {
  const std::string number = "777777776e0000000000000000000000000000000000000005124095576030431004";  // the fuzzer's
  try {
    (void)mmr::parse_json_limited("{\"temperature\": " + number + "}");
    ADD_FAILURE() << "expected a parse error";
  } catch (const nlohmann::json::parse_error& e) {
    EXPECT_NE(std::string(e.what()).find("number overflow parsing '" + number + "'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)mmr::parse_json_limited(std::string("[-1e999]")), nlohmann::json::parse_error);
  EXPECT_EQ(mmr::parse_json_limited(std::string("[1.7e308]"))[0].get<double>(), 1.7e308);  // the largest still parse
}
