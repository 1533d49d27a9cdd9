// Transforms of a loaded row set, declared in YAML as a list applied in order:
//
//   transforms:
//     - image_folder: {from: /old/coco, to: /data/coco}   # rewrite an image path prefix (the pipeline applies
//                                                         # these as each row is read, before the image check)
//     - filter: {field: category, in: [conv, detail]}    # or equals: x, or regex: "^coco_"; not: true inverts
//     - build_pairs: {min_gap: 2, seed: 7}                # scored candidates -> preference pairs (pairs.h)
//     - fraction: 0.25                                    # data scaling: keep exactly round(0.25 N) rows
//     - flip_fraction: {value: 0.5, seed: 3}              # data noising: swap chosen/rejected in round(0.5 N)
//     - shuffle: true
//     - max_rows: 1000
//
// Determinism: every random choice comes from SplitMix64 seeded with mix(seed, transform name), where seed is the
// transform's own `seed:`, else the dataset's `seed` option, else the trial seed. The stream depends on the
// transform's name, not on its value or position, so a grid over `fraction` draws from one permutation.
//
// Exact counts: fraction and flip_fraction take k = round(f * N) rows, rounding half up, computed exactly from the
// decimal text written in the YAML ("0.35" is 35/100, so 0.35 * 10 = 3.5 -> 4; never a binary-float 3.4999).
// The rows are the first k of one seeded permutation of the N input positions, so for one seed and one input
// a smaller fraction's rows are a subset of a larger one's (data-scaling ablations nest), and likewise the pairs
// flipped at 0.25 are among those flipped at 0.5. fraction keeps the kept rows in their input order.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/api/dataset_api.h"

namespace mmr::data {

// A deterministic generator (SplitMix64): the same numbers on every platform and standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0, without modulo bias
 private:
  uint64_t state_;
};

uint64_t fnv1a64(const std::string& s);
uint64_t mix_seed(uint64_t seed, const std::string& stream, uint64_t extra = 0);

// A random permutation of 0..n-1 (Fisher-Yates).
std::vector<size_t> permutation(size_t n, uint64_t seed);

// An exact fraction p/q read from a YAML scalar ("0.25", "1", "3e-1", "1/3").
struct Fraction {
  uint64_t num = 0, den = 1;
  std::string text;
  // round(f * n), half up, exact.
  size_t of(size_t n) const;
};
// Throws ConfigError (with `where`) unless the text is a number in [0, 1].
Fraction parse_fraction(const std::string& text, const std::string& where);

// The rows of a dataset at any point of the pipeline: one kind at a time (build_pairs turns scored candidates
// into preference rows).
struct RowSet {
  RowKind kind = RowKind::Preference;
  std::vector<ConversationRow> conversations;
  std::vector<PreferenceRow> preferences;
  std::vector<ScoredCandidatesRow> scored;
  size_t size() const;
};

struct PairRule {
  std::vector<std::string> attributes = {"Helpfulness", "Correctness", "Coherence"};
  double min_gap = 2.0;
  // Which candidate is rejected: the lowest-scoring one (the earliest of ties: the authors' notebook takes
  // pandas' idxmin), or one drawn uniformly among those at least min_gap below the best (`random`).
  bool rejected_random = false;
};

struct Transform {
  std::string name;  // fraction, flip_fraction, shuffle, max_rows, filter, image_folder, build_pairs
  std::string where;  // "file:line:col: " of its YAML node, for errors
  std::optional<uint64_t> seed;
  Fraction fraction;  // fraction, flip_fraction
  int64_t max_rows = 0;
  // filter
  std::string field;
  std::string op;  // equals, in, regex
  std::vector<std::string> values;
  bool negate = false;
  // image_folder
  std::string from, to;
  // build_pairs
  PairRule rule;
};

// Parses the `transforms` option (a YAML list); every error names file:line:column, the transform and the key.
std::vector<Transform> parse_transforms(const YAML::Node& list, const std::string& source);

// Counts kept by the transforms and recorded as metrics ("filtered", "flipped", ...).
using Counters = std::map<std::string, int64_t>;

// The row kind that comes out of the transforms given rows of `input` kind (ConfigError when a transform does
// not apply to the kind it gets, e.g. flip_fraction on conversation rows).
RowKind output_kind(RowKind input, const std::vector<Transform>& transforms);

void apply_transforms(RowSet& rows, const std::vector<Transform>& transforms, uint64_t default_seed, Counters& counts);

// The individual steps (exposed for tests).
template <typename Row>
void keep_fraction(std::vector<Row>& rows, const Fraction& f, uint64_t seed);
void flip_fraction(std::vector<PreferenceRow>& rows, const Fraction& f, uint64_t seed, Counters& counts);
// image_folder: replaces the prefix `from` of an image path by `to` when the path is `from` or lies under it
// (component-wise: "/a/b" does not match "/a/bc"). Returns whether it did.
bool remap_image_path(std::string& path, const Transform& t);
// Builds pairs by the paper's rule; groups skipped are counted in counts["groups_skipped/<why>"].
std::vector<PreferenceRow> build_pairs(const std::vector<ScoredCandidatesRow>& groups, const PairRule& rule,
                                       uint64_t seed, Counters& counts);

}  // namespace mmr::data
