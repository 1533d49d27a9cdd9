#include "plugins/datasets/synthetic/rng.h"

#include "core/api/error.h"

namespace mmr::synthetic {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a64(std::string_view text) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001B3ULL;
  }
  return h;
}

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  return splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ splitmix64(index + 0x9E3779B97F4A7C15ULL));
}

uint64_t Rng::uniform_below(uint64_t n) {
  MMR_CHECK(n > 0, "uniform_below(0)");
  const uint64_t threshold = (0 - n) % n;  // (2^64 - n) mod n: draws below it would bias the low residues
  for (;;) {
    const uint64_t r = engine_();
    if (r >= threshold) return r % n;
  }
}

int64_t Rng::uniform_int(int64_t lo, int64_t hi) {
  MMR_CHECK(lo <= hi, "uniform_int(" << lo << ", " << hi << ")");
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == UINT64_MAX) return static_cast<int64_t>(engine_());
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + uniform_below(span + 1));
}

double Rng::uniform01() {
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

size_t Rng::weighted_index(const std::vector<uint64_t>& weights) {
  uint64_t total = 0;
  for (uint64_t w : weights) total += w;
  MMR_CHECK(total > 0, "weighted_index over " << weights.size() << " zero weights");
  uint64_t r = uniform_below(total);
  for (size_t i = 0; i < weights.size(); ++i) {
    if (r < weights[i]) return i;
    r -= weights[i];
  }
  MMR_CHECK(false, "weighted_index ran past the end");
  return 0;
}

}  // namespace mmr::synthetic
