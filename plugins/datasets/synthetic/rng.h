// The one pseudo-random source of the synthetic world, identical on every platform and standard library.
//
// Engine: std::mt19937_64, whose output sequence the C++ standard fixes bit for bit. Everything built on it is
// ours, because std::uniform_int_distribution, std::shuffle & co. differ between libstdc++, libc++ and MSVC:
//   uniform_below(n)  rejection sampling: draw r until r >= (2^64 - n) mod n, return r mod n (no modulo bias)
//   uniform01()       the top 53 bits of one draw times 2^-53, in [0, 1)
//   shuffle(v)        Fisher-Yates from the back: for i = n-1 .. 1, swap v[i] with v[uniform_below(i + 1)]
//   weighted_index(w) uniform_below(sum of w), then the first index whose running sum exceeds it
// Sub-streams: every part of the world (a scene, an image's questions, a text task, a pair group) seeds its own
// Rng with derive_seed(world seed, stream tag, index), so changing how many text tasks there are does not change
// a single image, and a pair group's draw depends only on its id.
#pragma once

#include <cstdint>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

namespace mmr::synthetic {

// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mixer.
uint64_t splitmix64(uint64_t x);

// FNV-1a, 64-bit: a stable hash of a string (ids → sub-stream index).
uint64_t fnv1a64(std::string_view text);

// seed' = splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ splitmix64(index + 0x9E3779B97F4A7C15)).
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index);

// Stream tags for derive_seed; fixed forever (changing one changes every world generated with it).
enum Stream : uint64_t {
  kStreamCategoryModel = 1,  // popularity ranks and companions of the object categories
  kStreamScene = 2,          // one per image: objects, sizes, placement
  kStreamVqa = 3,            // one per image: which questions are asked
  kStreamPope = 4,           // one per image: which positives and random negatives are probed
  kStreamText = 5,           // one per text task
  kStreamCandidates = 6,     // one per question: candidate kinds and their wording
  kStreamPairs = 7,          // build_pairs: one per group id (fnv1a64(id))
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}

  uint64_t next_u64() { return engine_(); }
  // Uniform in [0, n); n > 0.
  uint64_t uniform_below(uint64_t n);
  // Uniform in [lo, hi], both inclusive; lo <= hi.
  int64_t uniform_int(int64_t lo, int64_t hi);
  // Uniform in [0, 1) with 53 random bits.
  double uniform01();
  // True with probability p.
  bool bernoulli(double p) { return uniform01() < p; }
  // Index i with probability w[i] / sum(w); the sum must be > 0.
  size_t weighted_index(const std::vector<uint64_t>& weights);

  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(uniform_below(i));
      std::swap(v[i - 1], v[j]);
    }
  }

  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<size_t>(uniform_below(v.size()))];
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace mmr::synthetic
