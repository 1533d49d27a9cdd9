// The synthetic world: one call writes a small, complete multimodal dataset into a folder, deterministically
// from a seed. Torch-free; the `synthetic` dataset plugin wraps it.
//
// Output folder (all writes atomic: temporary file, then rename; manifest.json is written last, so its presence
// means the world is complete):
//   images/train_000000.png ...   training scenes (PNG, RGB, image_size x image_size)
//   images/eval_000000.png ...    held-out scenes (questions and POPE probes only)
//   ground_truth.jsonl            per image: image, split, width, height, background, objects
//                                 [{shape, colour, bbox [x0, y0, x1, y1] inclusive, position}]
//   vqa_train.json                LLaVA conversation rows (JSON array) for the training scenes
//   vqa_eval.jsonl                {question_id, image, text, category, answer, short_answer} for held-out scenes
//   text_train.json               LLaVA conversation rows without "image" for the text tasks
//   text_eval.jsonl               {question_id, text, category, answer, short_answer}
//   pope_random.jsonl, pope_popular.jsonl, pope_adversarial.jsonl
//                                 POPE rows {question_id, image, text, label} over the held-out scenes
//   scored_candidates.jsonl       {id, image?, question, candidates: [{response, kind, scores}]} per training
//                                 question (visual, then text)
//   pairs.jsonl                   DPO rows {id, image?, question, chosen, rejected} by the paper's rule
//   bench/                        the held-out sets in the official benchmark formats (bench.h), for the real
//                                 benchmark plugins with image_folder <world>/images:
//     pope/llava_pope_test.jsonl          LLaVA's POPE questions (all three splits; ids as LLaVA's file)
//     pope/labels/coco_pope_random.json, coco_pope_popular.json, coco_pope_adversarial.json
//                                         POPE's label files (= pope_<split>.jsonl)
//     mm_vet/llava-mm-vet.jsonl, mm_vet/mm-vet.json
//                                         vqa_eval as MM-Vet: questions, and metadata with the capability (the
//                                         question type) and the full answer as ground truth
//     mt_bench/question.jsonl, mt_bench/reference_answer.jsonl
//                                         text_eval as MT-Bench: consecutive tasks paired into two-turn questions
//                                         ("math" / "reasoning"), the full answers as reference ("reference")
//   manifest.json                 {generator, format_version, config, counts, files: {path: {bytes, sha256}}}
//
// Determinism: same config (seed included) -> byte-identical files on any platform with the same libstb. Each
// image, question set, text task and pair draw has its own sub-stream (rng.h), so changing a count only adds or
// removes items; it does not reshuffle the others. Held-out items use index 2^32 + i.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/candidates.h"
#include "plugins/datasets/synthetic/pairs.h"

namespace mmr::synthetic {

// manifest.json's format_version: 2 added bench/. A folder whose manifest has another version is regenerated.
inline constexpr int kWorldFormatVersion = 2;

// Every knob; the JSON/YAML key has the field's name. Defaults make 250 images, 1,000 scored questions and ~940
// pairs (3 MB) in about 2.5 s on one core.
struct WorldConfig {
  uint64_t seed = 1;
  // Scenes
  int image_size = 336;               // LLaVA-1.5's CLIP input; smaller (e.g. 112) for quick tests
  int num_train_images = 200;
  int num_eval_images = 50;           // held out: vqa_eval + POPE only
  int min_objects = 1;
  int max_objects = 5;
  double object_size_min = 0.12;      // shape cell side as a fraction of image_size; >= 20 px after rounding
  double object_size_max = 0.24;
  std::vector<std::string> shapes = {"circle", "square", "triangle", "star", "cross"};
  std::vector<std::string> colours = {"red", "green", "blue", "yellow", "purple", "orange"};
  std::array<int, 3> background = {255, 255, 255};
  double cooccur_prob = 0.5;          // chance an extra object is a companion of one already placed (POPE adversarial)
  // Questions
  int questions_per_image = 4;
  std::vector<std::string> question_types = {"count", "colour", "position", "existence"};
  int pope_per_image = 3;             // yes probes per held-out image (and as many no probes) in each split
  int num_text_tasks = 200;
  int num_eval_text_tasks = 50;
  std::vector<std::string> text_task_types = {"add",          "subtract",   "multiply",
                                              "reverse",      "uppercase",  "count_letter",
                                              "sort_numbers", "sort_words", "word_problem"};
  // Candidates and pairs
  int candidates_per_question = 4;    // the paper sampled 4 per question
  KindWeights candidate_kind_weights;
  PairRule pair_rule;                 // keys pair_attributes, pair_min_gap

  // Missing keys keep their defaults; unknown keys, wrong types and out-of-range values throw mmr::ConfigError
  // naming the key, what was expected and what was found.
  static WorldConfig from_json(const nlohmann::json& j);
  nlohmann::ordered_json to_json() const;
  // Throws mmr::ConfigError on any inconsistent value (from_json calls it).
  void validate() const;
};

struct WorldStats {
  int64_t train_images = 0, eval_images = 0;
  int64_t objects = 0, objects_dropped = 0;
  int64_t vqa_train = 0, vqa_eval = 0, questions_skipped = 0;
  int64_t text_train = 0, text_eval = 0;
  int64_t scored_groups = 0, candidates = 0;
  std::map<std::string, int64_t> candidates_by_kind;
  PairStats pairs;
  int64_t pope_random = 0, pope_popular = 0, pope_adversarial = 0, pope_images_with_fewer_probes = 0;
  int64_t bench_pope = 0, bench_mm_vet = 0, bench_mt_bench = 0;  // questions in bench/<benchmark>/
  int64_t bench_text_tasks_unpaired = 0;  // 1 when num_eval_text_tasks is odd (MT-Bench questions have 2 turns)
  int64_t files = 0;
  nlohmann::ordered_json to_json() const;
};

// Writes the world into out_dir (created if needed; existing files of the same names are replaced).
// Throws mmr::ConfigError for a bad config and mmr::IoError when a file cannot be written.
WorldStats generate_world(const WorldConfig& config, const std::filesystem::path& out_dir);

// The world's vocabulary and category model for a config (exposed for tests and the plugin).
Vocabulary make_vocabulary(const WorldConfig& config);
SceneSpec make_scene_spec(const WorldConfig& config);
// Ground truth of image i of a split ("train" or "eval") without rendering or writing anything.
ImageTruth make_image_truth(const WorldConfig& config, const std::string& split, int64_t index,
                            int* dropped = nullptr);

}  // namespace mmr::synthetic
