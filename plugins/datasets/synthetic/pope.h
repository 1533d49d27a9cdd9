// POPE-style yes/no object probes (Li et al. 2023, "Evaluating Object Hallucination in Large Vision-Language
// Models") over synthetic scenes, in the format of POPE's output/coco/coco_pope_*.json files (one JSON object per
// line: question_id, image, text "Is there a <object> in the image?", label "yes"/"no").
//
// An "object" is a (colour, shape) category, e.g. "red circle". Per image, k = min(per_image, #present, #absent):
// the same k present categories (a seeded draw) are the "yes" probes of all three splits, and k absent ones are the
// "no" probes, chosen as POPE does:
//   random       k absent categories drawn uniformly (seeded Fisher-Yates)
//   popular      the k absent categories that occur in the most images of the world; ties by category index
//   adversarial  the k absent categories with the highest co-occurrence score with what is present,
//                score(c) = sum over present p of #images containing both p and c; ties by popularity, then index
// Statistics are counted over every image of the world (train and eval), like POPE counts over its annotations.
// Rows alternate yes, no, yes, no ... as in POPE's files; question_id runs from 1 in each split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/scene.h"

namespace mmr::synthetic {

struct PopeStatistics {
  std::vector<int64_t> frequency;                  // [c]: images containing c
  std::vector<std::vector<int64_t>> cooccurrence;  // [a][b]: images containing both a and b (a != b); [c][c] = 0
};

PopeStatistics pope_statistics(const std::vector<ImageTruth>& images, const Vocabulary& vocab);

// Distinct categories present in an image, ascending.
std::vector<int> present_categories(const ImageTruth& truth, const Vocabulary& vocab);

std::vector<int> popular_negatives(const std::vector<int>& present, const PopeStatistics& stats, int k);
std::vector<int> adversarial_negatives(const std::vector<int>& present, const PopeStatistics& stats, int k);

struct PopeProbe {
  int64_t question_id = 0;
  std::string image;
  std::string text;
  std::string label;  // "yes" / "no"
  int category = -1;
};

struct PopeSplits {
  std::vector<PopeProbe> random, popular, adversarial;
  int images_with_fewer_probes = 0;  // images where k < per_image (too few present or absent categories)
};

// Probes for `probed` (usually the eval images), with per-image draws from derive_seed(seed, kStreamPope, i).
PopeSplits make_pope(const std::vector<ImageTruth>& probed, const PopeStatistics& stats, const Vocabulary& vocab,
                     int per_image, uint64_t seed);

nlohmann::ordered_json to_json(const PopeProbe& probe);

}  // namespace mmr::synthetic
