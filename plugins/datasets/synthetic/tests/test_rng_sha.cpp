// The PRNG helpers: the foundation that makes the world reproducible (SHA-256 and atomic writes are tested in
// core/lib/util/tests).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/rng.h"
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
