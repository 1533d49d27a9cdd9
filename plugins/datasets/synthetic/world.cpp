#include "plugins/datasets/synthetic/world.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "plugins/datasets/synthetic/pope.h"
#include "plugins/datasets/synthetic/questions.h"
#include "plugins/datasets/synthetic/rng.h"
#include "plugins/datasets/synthetic/scene.h"
#include "core/lib/util/sha256.h"
#include "plugins/datasets/synthetic/text_tasks.h"

namespace mmr::synthetic {

namespace fs = std::filesystem;

namespace {

constexpr int kFormatVersion = 1;
constexpr uint64_t kEvalIndexBase = uint64_t{1} << 32;  // held-out items' sub-stream indices
constexpr int kMinShapePx = 20;  // below ~20 px a five-pointed star rasterises to a blob

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> log = [] {
    if (auto existing = spdlog::get("synthetic")) return existing;
    return spdlog::default_logger()->clone("synthetic");  // same sinks as the host's default logger
  }();
  return log;
}

// ---- config parsing --------------------------------------------------------------------------------------------

std::string describe(const nlohmann::json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return fmt::format("{} ({})", text, v.type_name());
}

[[noreturn]] void bad_key(const std::string& key, const std::string& expected, const nlohmann::json& found) {
  throw ConfigError(fmt::format("synthetic config: key '{}': expected {}, found {}", key, expected, describe(found)));
}

int get_int(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number_integer()) bad_key(key, "an integer", v);
  const int64_t x = v.get<int64_t>();
  if (x < INT32_MIN || x > INT32_MAX) bad_key(key, "an integer that fits 32 bits", v);
  return static_cast<int>(x);
}

uint64_t get_u64(const nlohmann::json& v, const std::string& key) {
  // A YAML/JSON integer may arrive signed (number_integer) or unsigned: either is fine when it is >= 0.
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0)) bad_key(key, "a non-negative integer", v);
  return v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
}

double get_double(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number()) bad_key(key, "a number", v);
  return v.get<double>();
}

std::vector<std::string> get_strings(const nlohmann::json& v, const std::string& key) {
  if (!v.is_array()) bad_key(key, "a list of names", v);
  std::vector<std::string> out;
  for (const auto& item : v) {
    if (!item.is_string()) bad_key(key, "a list of names", v);
    out.push_back(item.get<std::string>());
  }
  return out;
}

void require(bool ok, const std::string& key, const std::string& message) {
  if (!ok) throw ConfigError(fmt::format("synthetic config: key '{}': {}", key, message));
}

template <class T>
void require_distinct(const std::vector<T>& items, const std::string& key) {
  std::set<T> seen(items.begin(), items.end());
  require(seen.size() == items.size(), key, "lists a name twice");
}

std::string index_name(const std::string& split, int64_t index) {
  return fmt::format("{}_{:06d}.png", split, index);
}

uint64_t stream_index(const std::string& split, int64_t index) {
  return (split == "eval" ? kEvalIndexBase : 0) + static_cast<uint64_t>(index);
}

std::string jsonl(const std::vector<nlohmann::ordered_json>& rows) {
  std::string out;
  for (const auto& row : rows) {
    out += row.dump();
    out += '\n';
  }
  return out;
}

std::string json_array(const std::vector<nlohmann::ordered_json>& rows) {
  return nlohmann::ordered_json(rows).dump(2) + "\n";
}

}  // namespace

WorldConfig WorldConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) bad_key("<root>", "an object of options", j);
  WorldConfig c;
  static const std::vector<std::string> kKeys = {
      "seed",           "image_size",          "num_train_images",    "num_eval_images",
      "min_objects",    "max_objects",         "object_size_min",     "object_size_max",
      "shapes",         "colours",             "background",          "cooccur_prob",
      "questions_per_image", "question_types", "pope_per_image",      "num_text_tasks",
      "num_eval_text_tasks", "text_task_types", "candidates_per_question", "candidate_kind_weights",
      "pair_attributes", "pair_min_gap"};
  for (const auto& [key, value] : j.items()) {
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end()) {
      throw ConfigError(fmt::format("synthetic config: unknown key '{}'; known keys: {}", key, fmt::join(kKeys, ", ")));
    }
    if (key == "seed") c.seed = get_u64(value, key);
    else if (key == "image_size") c.image_size = get_int(value, key);
    else if (key == "num_train_images") c.num_train_images = get_int(value, key);
    else if (key == "num_eval_images") c.num_eval_images = get_int(value, key);
    else if (key == "min_objects") c.min_objects = get_int(value, key);
    else if (key == "max_objects") c.max_objects = get_int(value, key);
    else if (key == "object_size_min") c.object_size_min = get_double(value, key);
    else if (key == "object_size_max") c.object_size_max = get_double(value, key);
    else if (key == "shapes") c.shapes = get_strings(value, key);
    else if (key == "colours") c.colours = get_strings(value, key);
    else if (key == "background") {
      if (!value.is_array() || value.size() != 3) bad_key(key, "[r, g, b] with 0..255 each", value);
      for (size_t i = 0; i < 3; ++i) c.background[i] = get_int(value[i], key);
    } else if (key == "cooccur_prob") c.cooccur_prob = get_double(value, key);
    else if (key == "questions_per_image") c.questions_per_image = get_int(value, key);
    else if (key == "question_types") c.question_types = get_strings(value, key);
    else if (key == "pope_per_image") c.pope_per_image = get_int(value, key);
    else if (key == "num_text_tasks") c.num_text_tasks = get_int(value, key);
    else if (key == "num_eval_text_tasks") c.num_eval_text_tasks = get_int(value, key);
    else if (key == "text_task_types") c.text_task_types = get_strings(value, key);
    else if (key == "candidates_per_question") c.candidates_per_question = get_int(value, key);
    else if (key == "candidate_kind_weights") {
      if (!value.is_object()) bad_key(key, "an object {correct, partial, hallucinated, padded: weight}", value);
      for (const auto& [kind, weight] : value.items()) {
        const std::string sub = key + "." + kind;
        switch (candidate_kind_from_name(kind, sub)) {
          case CandidateKind::kCorrect: c.candidate_kind_weights.correct = get_u64(weight, sub); break;
          case CandidateKind::kPartial: c.candidate_kind_weights.partial = get_u64(weight, sub); break;
          case CandidateKind::kHallucinated: c.candidate_kind_weights.hallucinated = get_u64(weight, sub); break;
          case CandidateKind::kPadded: c.candidate_kind_weights.padded = get_u64(weight, sub); break;
        }
      }
    } else if (key == "pair_attributes") c.pair_rule.attributes = get_strings(value, key);
    else if (key == "pair_min_gap") c.pair_rule.min_gap = get_double(value, key);
  }
  c.validate();
  return c;
}

nlohmann::ordered_json WorldConfig::to_json() const {
  nlohmann::ordered_json j;
  j["seed"] = seed;
  j["image_size"] = image_size;
  j["num_train_images"] = num_train_images;
  j["num_eval_images"] = num_eval_images;
  j["min_objects"] = min_objects;
  j["max_objects"] = max_objects;
  j["object_size_min"] = object_size_min;
  j["object_size_max"] = object_size_max;
  j["shapes"] = shapes;
  j["colours"] = colours;
  j["background"] = background;
  j["cooccur_prob"] = cooccur_prob;
  j["questions_per_image"] = questions_per_image;
  j["question_types"] = question_types;
  j["pope_per_image"] = pope_per_image;
  j["num_text_tasks"] = num_text_tasks;
  j["num_eval_text_tasks"] = num_eval_text_tasks;
  j["text_task_types"] = text_task_types;
  j["candidates_per_question"] = candidates_per_question;
  j["candidate_kind_weights"] = {{"correct", candidate_kind_weights.correct},
                                 {"partial", candidate_kind_weights.partial},
                                 {"hallucinated", candidate_kind_weights.hallucinated},
                                 {"padded", candidate_kind_weights.padded}};
  j["pair_attributes"] = pair_rule.attributes;
  j["pair_min_gap"] = pair_rule.min_gap;
  return j;
}

void WorldConfig::validate() const {
  require(image_size >= 32 && image_size <= 4096, "image_size", fmt::format("must be in 32..4096, is {}", image_size));
  require(num_train_images >= 0, "num_train_images", "must be >= 0");
  require(num_eval_images >= 0, "num_eval_images", "must be >= 0");
  require(min_objects >= 1, "min_objects", fmt::format("must be >= 1, is {}", min_objects));
  require(max_objects >= min_objects, "max_objects",
          fmt::format("must be >= min_objects ({}), is {}", min_objects, max_objects));
  require(max_objects <= 64, "max_objects", fmt::format("must be <= 64, is {}", max_objects));
  require(object_size_min > 0 && object_size_min <= object_size_max, "object_size_min",
          fmt::format("must be in (0, object_size_max = {}], is {}", object_size_max, object_size_min));
  require(object_size_max <= 0.9, "object_size_max", fmt::format("must be <= 0.9, is {}", object_size_max));
  const SceneSpec spec = make_scene_spec(*this);
  require(spec.size_min_px >= kMinShapePx, "object_size_min",
          fmt::format("gives {} px shapes at image_size {}; need >= {} px so shapes stay recognisable",
                      spec.size_min_px, image_size, kMinShapePx));
  require(!shapes.empty(), "shapes", "must list at least one shape");
  require(!colours.empty(), "colours", "must list at least one colour");
  require_distinct(shapes, "shapes");
  require_distinct(colours, "colours");
  for (const std::string& s : shapes) shape_from_name(s, "shapes");
  for (int i = 0; i < 3; ++i) {
    require(background[i] >= 0 && background[i] <= 255, "background", "channels must be in 0..255");
  }
  for (const std::string& name : colours) {
    const auto& rgb = palette()[colour_index(name, "colours")].rgb;
    require(!(rgb[0] == background[0] && rgb[1] == background[1] && rgb[2] == background[2]), "background",
            fmt::format("equals the colour '{}'; shapes of that colour would be invisible", name));
  }
  require(cooccur_prob >= 0 && cooccur_prob <= 1, "cooccur_prob", fmt::format("must be in [0, 1], is {}", cooccur_prob));
  require(questions_per_image >= 0, "questions_per_image", "must be >= 0");
  require(!question_types.empty(), "question_types", "must list at least one type");
  require_distinct(question_types, "question_types");
  for (const std::string& t : question_types) question_type_from_name(t, "question_types");
  require(pope_per_image >= 0, "pope_per_image", "must be >= 0");
  require(num_text_tasks >= 0, "num_text_tasks", "must be >= 0");
  require(num_eval_text_tasks >= 0, "num_eval_text_tasks", "must be >= 0");
  require(!text_task_types.empty(), "text_task_types", "must list at least one type");
  require_distinct(text_task_types, "text_task_types");
  for (const std::string& t : text_task_types) text_task_type_from_name(t, "text_task_types");
  require(candidates_per_question >= 1, "candidates_per_question", "must be >= 1");
  const KindWeights& w = candidate_kind_weights;
  require(w.correct + w.partial + w.hallucinated + w.padded > 0, "candidate_kind_weights", "are all zero");
  require(!pair_rule.attributes.empty(), "pair_attributes", "must list at least one attribute");
  for (const std::string& a : pair_rule.attributes) {
    require(std::find(attribute_names().begin(), attribute_names().end(), a) != attribute_names().end(),
            "pair_attributes", fmt::format("unknown attribute '{}'; known: {}", a, fmt::join(attribute_names(), ", ")));
  }
  require(pair_rule.min_gap > 0, "pair_min_gap", fmt::format("must be > 0, is {}", pair_rule.min_gap));
}

nlohmann::ordered_json WorldStats::to_json() const {
  nlohmann::ordered_json j;
  j["train_images"] = train_images;
  j["eval_images"] = eval_images;
  j["objects"] = objects;
  j["objects_dropped"] = objects_dropped;
  j["vqa_train"] = vqa_train;
  j["vqa_eval"] = vqa_eval;
  j["questions_skipped"] = questions_skipped;
  j["text_train"] = text_train;
  j["text_eval"] = text_eval;
  j["scored_groups"] = scored_groups;
  j["candidates"] = candidates;
  j["candidates_by_kind"] = candidates_by_kind;
  j["pairs"] = pairs.to_json();
  j["pope_random"] = pope_random;
  j["pope_popular"] = pope_popular;
  j["pope_adversarial"] = pope_adversarial;
  j["pope_images_with_fewer_probes"] = pope_images_with_fewer_probes;
  j["files"] = files;
  return j;
}

Vocabulary make_vocabulary(const WorldConfig& config) {
  Vocabulary vocab;
  for (const std::string& s : config.shapes) vocab.shapes.push_back(shape_from_name(s, "shapes"));
  for (const std::string& c : config.colours) vocab.colours.push_back(colour_index(c, "colours"));
  return vocab;
}

SceneSpec make_scene_spec(const WorldConfig& config) {
  SceneSpec spec;
  spec.width = spec.height = config.image_size;
  spec.min_objects = config.min_objects;
  spec.max_objects = config.max_objects;
  spec.size_min_px = static_cast<int>(std::lround(config.object_size_min * config.image_size));
  spec.size_max_px = static_cast<int>(std::lround(config.object_size_max * config.image_size));
  spec.gap_px = std::max(3, config.image_size / 50);
  spec.margin_px = 2;
  spec.cooccur_prob = config.cooccur_prob;
  for (int i = 0; i < 3; ++i) spec.background[i] = static_cast<uint8_t>(config.background[i]);
  return spec;
}

ImageTruth make_image_truth(const WorldConfig& config, const std::string& split, int64_t index, int* dropped) {
  const Vocabulary vocab = make_vocabulary(config);
  const CategoryModel model =
      make_category_model(vocab.num_categories(), derive_seed(config.seed, kStreamCategoryModel, 0));
  Rng rng(derive_seed(config.seed, kStreamScene, stream_index(split, index)));
  SceneSample sample = sample_scene(make_scene_spec(config), vocab, model, rng);
  sample.truth.image = index_name(split, index);
  sample.truth.split = split;
  if (dropped) *dropped = sample.dropped;
  return sample.truth;
}

WorldStats generate_world(const WorldConfig& config, const fs::path& out_dir) {
  config.validate();
  WorldStats stats;
  std::map<std::string, std::pair<size_t, std::string>> files;  // relative path -> (bytes, sha256), for the manifest
  auto write = [&](const std::string& rel, const std::string& bytes) {
    write_file_atomic(out_dir / rel, bytes);
    files[rel] = {bytes.size(), sha256_hex(bytes)};
  };

  const Vocabulary vocab = make_vocabulary(config);
  std::vector<QuestionType> question_types;
  for (const auto& t : config.question_types) question_types.push_back(question_type_from_name(t, "question_types"));
  std::vector<TextTaskType> text_types;
  for (const auto& t : config.text_task_types) text_types.push_back(text_task_type_from_name(t, "text_task_types"));

  // 1. Scenes: ground truth, pixels, PNG files.
  std::vector<ImageTruth> train, eval;
  for (const auto& [split, count] : {std::pair<std::string, int>{"train", config.num_train_images},
                                     std::pair<std::string, int>{"eval", config.num_eval_images}}) {
    for (int i = 0; i < count; ++i) {
      int dropped = 0;
      ImageTruth truth = make_image_truth(config, split, i, &dropped);
      stats.objects += static_cast<int64_t>(truth.objects.size());
      stats.objects_dropped += dropped;
      write("images/" + truth.image, encode_png(render(truth)));
      (split == "train" ? train : eval).push_back(std::move(truth));
    }
  }
  stats.train_images = static_cast<int64_t>(train.size());
  stats.eval_images = static_cast<int64_t>(eval.size());
  if (stats.objects_dropped > 0) {
    logger()->warn("{} of {} sampled objects found no free spot and were dropped (max_objects {} with shapes up to "
                   "{} of the image); lower max_objects or object_size_max to keep them",
                   stats.objects_dropped, stats.objects + stats.objects_dropped, config.max_objects,
                   config.object_size_max);
  }
  std::vector<nlohmann::ordered_json> truth_rows;
  for (const auto* split : {&train, &eval}) {
    for (const ImageTruth& t : *split) truth_rows.push_back(to_json(t));
  }
  write("ground_truth.jsonl", jsonl(truth_rows));

  // 2. Visual questions; training ones get scored candidates.
  std::vector<nlohmann::ordered_json> vqa_train_rows, vqa_eval_rows, scored_rows;
  std::vector<ScoredGroup> groups;
  auto add_group = [&](const std::string& id, const std::string& image, const std::string& question,
                       const ResponseVariants& variants) {
    Rng rng(derive_seed(config.seed, kStreamCandidates, fnv1a64(id)));
    const std::vector<Candidate> candidates =
        make_candidates(variants, config.candidates_per_question, config.candidate_kind_weights, rng);
    scored_rows.push_back(scored_candidates_row(id, image, question, candidates));
    ScoredGroup group{id, image, question, {}};
    for (const Candidate& c : candidates) {
      ++stats.candidates_by_kind[candidate_kind_name(c.kind)];
      group.candidates.push_back({c.response, {{"Helpfulness", c.scores.helpfulness},
                                               {"Correctness", c.scores.correctness},
                                               {"Coherence", c.scores.coherence},
                                               {"Complexity", c.scores.complexity},
                                               {"Verbosity", c.scores.verbosity}}});
    }
    stats.candidates += static_cast<int64_t>(candidates.size());
    groups.push_back(std::move(group));
  };
  for (const auto* split : {&train, &eval}) {
    for (size_t i = 0; i < split->size(); ++i) {
      const ImageTruth& truth = (*split)[i];
      Rng rng(derive_seed(config.seed, kStreamVqa, stream_index(truth.split, static_cast<int64_t>(i))));
      int skipped = 0;
      const std::vector<VqaItem> items =
          make_vqa_items(truth, vocab, question_types, config.questions_per_image, rng, &skipped);
      stats.questions_skipped += skipped;
      for (const VqaItem& item : items) {
        if (truth.split == "train") {
          vqa_train_rows.push_back(to_llava_row(item));
          Rng variant_rng(derive_seed(config.seed, kStreamCandidates, fnv1a64(item.id + "/variants")));
          add_group(item.id, item.image, item.question, vqa_variants(item, truth, vocab, variant_rng));
        } else {
          vqa_eval_rows.push_back(to_eval_row(item));
        }
      }
    }
  }
  stats.vqa_train = static_cast<int64_t>(vqa_train_rows.size());
  stats.vqa_eval = static_cast<int64_t>(vqa_eval_rows.size());

  // 3. Text tasks; training ones get scored candidates.
  std::vector<nlohmann::ordered_json> text_train_rows, text_eval_rows;
  for (const auto& [split, count] : {std::pair<std::string, int>{"train", config.num_text_tasks},
                                     std::pair<std::string, int>{"eval", config.num_eval_text_tasks}}) {
    for (int i = 0; i < count; ++i) {
      Rng rng(derive_seed(config.seed, kStreamText, stream_index(split, i)));
      TextTask task = make_text_task(rng.pick(text_types), rng);
      task.id = split == "train" ? fmt::format("text_{:06d}", i) : fmt::format("text_eval_{:06d}", i);
      if (split == "train") {
        text_train_rows.push_back(to_llava_row(task));
        add_group(task.id, "", task.question, text_variants(task));
      } else {
        text_eval_rows.push_back(to_eval_row(task));
      }
    }
  }
  stats.text_train = static_cast<int64_t>(text_train_rows.size());
  stats.text_eval = static_cast<int64_t>(text_eval_rows.size());
  stats.scored_groups = static_cast<int64_t>(groups.size());

  // 4. Preference pairs by the paper's rule.
  const PairResult pairs = build_pairs(groups, config.pair_rule, config.seed);
  stats.pairs = pairs.stats;
  std::vector<nlohmann::ordered_json> pair_rows;
  for (const PreferencePair& p : pairs.pairs) pair_rows.push_back(to_dpo_row(p));

  // 5. POPE probes over the held-out scenes, with statistics over the whole world.
  std::vector<ImageTruth> all_images = train;
  all_images.insert(all_images.end(), eval.begin(), eval.end());
  const PopeStatistics pope_stats = pope_statistics(all_images, vocab);
  const PopeSplits pope = make_pope(eval, pope_stats, vocab, config.pope_per_image, config.seed);
  stats.pope_images_with_fewer_probes = pope.images_with_fewer_probes;
  auto pope_file = [&](const std::string& rel, const std::vector<PopeProbe>& probes) {
    std::vector<nlohmann::ordered_json> rows;
    for (const PopeProbe& p : probes) rows.push_back(to_json(p));
    write(rel, jsonl(rows));
    return static_cast<int64_t>(rows.size());
  };
  stats.pope_random = pope_file("pope_random.jsonl", pope.random);
  stats.pope_popular = pope_file("pope_popular.jsonl", pope.popular);
  stats.pope_adversarial = pope_file("pope_adversarial.jsonl", pope.adversarial);

  write("vqa_train.json", json_array(vqa_train_rows));
  write("vqa_eval.jsonl", jsonl(vqa_eval_rows));
  write("text_train.json", json_array(text_train_rows));
  write("text_eval.jsonl", jsonl(text_eval_rows));
  write("scored_candidates.jsonl", jsonl(scored_rows));
  write("pairs.jsonl", jsonl(pair_rows));
  stats.files = static_cast<int64_t>(files.size()) + 1;  // + the manifest

  // 6. The manifest, last: its presence marks a complete world.
  nlohmann::ordered_json manifest;
  manifest["generator"] = "mmr-synthetic";
  manifest["format_version"] = kFormatVersion;
  manifest["config"] = config.to_json();
  manifest["counts"] = stats.to_json();
  nlohmann::ordered_json listing = nlohmann::ordered_json::object();
  for (const auto& [rel, size_and_hash] : files) {
    listing[rel] = {{"bytes", size_and_hash.first}, {"sha256", size_and_hash.second}};
  }
  manifest["files"] = std::move(listing);
  write_file_atomic(out_dir / "manifest.json", manifest.dump(2) + "\n");

  logger()->info("synthetic world in {}: {} train + {} eval images, {} + {} visual questions, {} + {} text tasks, "
                 "{} scored groups -> {} pairs ({} skipped for spread < {}), POPE {} probes per split",
                 out_dir.string(), stats.train_images, stats.eval_images, stats.vqa_train, stats.vqa_eval,
                 stats.text_train, stats.text_eval, stats.scored_groups, stats.pairs.pairs,
                 stats.pairs.skipped_small_spread, config.pair_rule.min_gap, stats.pope_random);
  return stats;
}

}  // namespace mmr::synthetic
