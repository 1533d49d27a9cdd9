// The PRNG helpers, SHA-256 and atomic writes: the foundations that make the world reproducible.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "plugins/datasets/synthetic/rng.h"
#include "core/lib/util/sha256.h"
#include "png_probe.h"

namespace fs = std::filesystem;
using mmr::synthetic::Rng;

TEST(SyntheticRng, EngineIsTheStandardMt19937_64) {
  // [rand.predef]: the 10000th consecutive invocation of a default-constructed mt19937_64 produces 9981545732273789042.
  Rng rng(5489u);
  uint64_t x = 0;
  for (int i = 0; i < 10000; ++i) x = rng.next_u64();
  EXPECT_EQ(x, 9981545732273789042ULL);
}

TEST(SyntheticRng, UniformBelowIsRejectionSamplingAsDocumented) {
  std::mt19937_64 engine(42);
  Rng rng(42);
  for (uint64_t n : {1ULL, 2ULL, 3ULL, 7ULL, 1000ULL, (1ULL << 63) + 5}) {
    for (int i = 0; i < 200; ++i) {
      const uint64_t threshold = (0 - n) % n;
      uint64_t r;
      do r = engine(); while (r < threshold);
      ASSERT_EQ(rng.uniform_below(n), r % n) << "n=" << n;
    }
  }
}

TEST(SyntheticRng, UniformBelowIsRoughlyFlat) {
  Rng rng(7);
  std::vector<int> hist(6, 0);
  for (int i = 0; i < 60000; ++i) ++hist[rng.uniform_below(6)];
  for (int c : hist) EXPECT_NEAR(c, 10000, 400);
}

TEST(SyntheticRng, ShuffleIsFisherYatesFromTheBack) {
  std::mt19937_64 engine(9);
  Rng rng(9);
  std::vector<int> expected(10), actual(10);
  for (int i = 0; i < 10; ++i) expected[i] = actual[i] = i;
  for (size_t i = expected.size(); i > 1; --i) {
    const uint64_t threshold = (0 - static_cast<uint64_t>(i)) % i;
    uint64_t r;
    do r = engine(); while (r < threshold);
    std::swap(expected[i - 1], expected[r % i]);
  }
  rng.shuffle(actual);
  EXPECT_EQ(actual, expected);
}

TEST(SyntheticRng, Uniform01UsesTheTop53Bits) {
  std::mt19937_64 engine(3);
  Rng rng(3);
  for (int i = 0; i < 100; ++i) {
    const double expected = static_cast<double>(engine() >> 11) / 9007199254740992.0;
    ASSERT_EQ(rng.uniform01(), expected);
  }
}

TEST(SyntheticRng, WeightedIndexFollowsTheWeights) {
  Rng rng(11);
  std::vector<int> hist(3, 0);
  for (int i = 0; i < 40000; ++i) ++hist[rng.weighted_index({1, 0, 3})];
  EXPECT_EQ(hist[1], 0);
  EXPECT_NEAR(hist[0], 10000, 400);
  EXPECT_NEAR(hist[2], 30000, 400);
}

TEST(SyntheticRng, DerivedSeedsDifferAcrossStreamsAndIndices) {
  std::set<uint64_t> seen;
  for (uint64_t stream = 1; stream <= 7; ++stream) {
    for (uint64_t index = 0; index < 100; ++index) seen.insert(mmr::synthetic::derive_seed(1, stream, index));
  }
  EXPECT_EQ(seen.size(), 700u);
  EXPECT_NE(mmr::synthetic::derive_seed(1, 2, 3), mmr::synthetic::derive_seed(2, 2, 3));
}

TEST(SyntheticSha256, MatchesFipsExamples) {
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

TEST(SyntheticAtomicFile, ReplacesTheFileAndLeavesNoTemporary) {
  const fs::path dir = synth_test::fresh_temp_dir("atomic");
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

TEST(SyntheticAtomicFile, UnwritablePlaceIsIoErrorNamingThePath) {
  const fs::path dir = synth_test::fresh_temp_dir("atomic_bad");
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
