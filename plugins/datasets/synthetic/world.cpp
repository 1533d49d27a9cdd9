#include "plugins/datasets/synthetic/world.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "plugins/datasets/synthetic/bench.h"
#include "plugins/datasets/synthetic/pope.h"
#include "plugins/datasets/synthetic/questions.h"
#include "plugins/datasets/synthetic/rng.h"
#include "plugins/datasets/synthetic/scene.h"
#include "core/lib/util/sha256.h"
#include "plugins/datasets/synthetic/text_tasks.h"

namespace mmr::synthetic {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kEvalIndexBase = uint64_t{1} << 32;  // held-out items' sub-stream indices
constexpr int kMinShapePx = 20;  // below ~20 px a five-pointed star rasterises to a blob

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> log = [] {
    if (auto existing = spdlog::get("synthetic")) return existing;
    return spdlog::default_logger()->clone("synthetic");  // same sinks as the host's default logger
  }();
  return log;
}

// ---- config keys ----------------------------------------------------------------------------------------------

// Every config key with its field, in the manifest's order. from_json, to_json and the list of known keys all
// come from here, so a knob is declared once (beside its default in world.h).
template <class Config, class Visit>
void for_each_key(Config& c, Visit&& visit) {
  visit("seed", c.seed);
  visit("image_size", c.image_size);
  visit("num_train_images", c.num_train_images);
  visit("num_eval_images", c.num_eval_images);
  visit("min_objects", c.min_objects);
  visit("max_objects", c.max_objects);
  visit("object_size_min", c.object_size_min);
  visit("object_size_max", c.object_size_max);
  visit("shapes", c.shapes);
  visit("colours", c.colours);
  visit("background", c.background);
  visit("cooccur_prob", c.cooccur_prob);
  visit("questions_per_image", c.questions_per_image);
  visit("question_types", c.question_types);
  visit("pope_per_image", c.pope_per_image);
  visit("num_text_tasks", c.num_text_tasks);
  visit("num_eval_text_tasks", c.num_eval_text_tasks);
  visit("text_task_types", c.text_task_types);
  visit("candidates_per_question", c.candidates_per_question);
  visit("candidate_kind_weights", c.candidate_kind_weights);
  visit("pair_attributes", c.pair_rule.attributes);
  visit("pair_min_gap", c.pair_rule.min_gap);
}

const std::vector<std::string>& config_keys() {
  static const std::vector<std::string> kKeys = [] {
    std::vector<std::string> keys;
    WorldConfig c;
    for_each_key(c, [&](const char* key, auto&) { keys.push_back(key); });
    return keys;
  }();
  return kKeys;
}

std::string describe(const nlohmann::json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return fmt::format("{} ({})", text, v.type_name());
}

[[noreturn]] void bad_key(const std::string& key, const std::string& expected, const nlohmann::json& found) {
  throw ConfigError(fmt::format("synthetic config: key '{}': expected {}, found {}", key, expected, describe(found)));
}

// One reader per field type: each checks the JSON value and names the key when it does not fit.
void read_key(const nlohmann::json& v, const std::string& key, int& out) {
  if (!v.is_number_integer()) bad_key(key, "an integer", v);
  const int64_t x = v.get<int64_t>();
  if (x < INT32_MIN || x > INT32_MAX) bad_key(key, "an integer that fits 32 bits", v);
  out = static_cast<int>(x);
}

void read_key(const nlohmann::json& v, const std::string& key, uint64_t& out) {
  // A YAML/JSON integer may arrive signed (number_integer) or unsigned: either is fine when it is >= 0.
  if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0)) bad_key(key, "a non-negative integer", v);
  out = v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<int64_t>());
}

void read_key(const nlohmann::json& v, const std::string& key, double& out) {
  if (!v.is_number()) bad_key(key, "a number", v);
  out = v.get<double>();
}

void read_key(const nlohmann::json& v, const std::string& key, std::vector<std::string>& out) {
  if (!v.is_array()) bad_key(key, "a list of names", v);
  out.clear();
  for (const auto& item : v) {
    if (!item.is_string()) bad_key(key, "a list of names", v);
    out.push_back(item.get<std::string>());
  }
}

void read_key(const nlohmann::json& v, const std::string& key, std::array<int, 3>& out) {
  if (!v.is_array() || v.size() != 3) bad_key(key, "[r, g, b] with 0..255 each", v);
  for (size_t i = 0; i < 3; ++i) read_key(v[i], key, out[i]);
}

void read_key(const nlohmann::json& v, const std::string& key, KindWeights& out) {
  if (!v.is_object()) bad_key(key, "an object {correct, partial, hallucinated, padded: weight}", v);
  for (const auto& [kind, weight] : v.items()) {
    const std::string sub = key + "." + kind;
    switch (candidate_kind_from_name(kind, sub)) {
      case CandidateKind::kCorrect: read_key(weight, sub, out.correct); break;
      case CandidateKind::kPartial: read_key(weight, sub, out.partial); break;
      case CandidateKind::kHallucinated: read_key(weight, sub, out.hallucinated); break;
      case CandidateKind::kPadded: read_key(weight, sub, out.padded); break;
    }
  }
}

// A field as JSON: most types convert as they are; the kind weights become an object.
template <class T>
const T& json_value(const T& field) {
  return field;
}
nlohmann::ordered_json json_value(const KindWeights& w) {
  return {{"correct", w.correct}, {"partial", w.partial}, {"hallucinated", w.hallucinated}, {"padded", w.padded}};
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
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for_each_key(c, [&, &key = key, &value = value](const char* name, auto& field) {
      if (key != name) return;
      read_key(value, key, field);
      known = true;
    });
    if (!known)
      throw ConfigError(fmt::format("synthetic config: unknown key '{}'; known keys: {}", key, fmt::join(config_keys(), ", ")));
  }
  c.validate();
  return c;
}

nlohmann::ordered_json WorldConfig::to_json() const {
  nlohmann::ordered_json j;
  for_each_key(*this, [&](const char* key, const auto& field) { j[key] = json_value(field); });
  return j;
}

namespace {

// Ranges and consistency of the scenes' knobs.
void validate_scenes(const WorldConfig& c) {
  require(c.image_size >= 32 && c.image_size <= 4096, "image_size", fmt::format("must be in 32..4096, is {}", c.image_size));
  require(c.num_train_images >= 0, "num_train_images", "must be >= 0");
  require(c.num_eval_images >= 0, "num_eval_images", "must be >= 0");
  require(c.min_objects >= 1, "min_objects", fmt::format("must be >= 1, is {}", c.min_objects));
  require(c.max_objects >= c.min_objects, "max_objects",
          fmt::format("must be >= min_objects ({}), is {}", c.min_objects, c.max_objects));
  require(c.max_objects <= 64, "max_objects", fmt::format("must be <= 64, is {}", c.max_objects));
  require(c.object_size_min > 0 && c.object_size_min <= c.object_size_max, "object_size_min",
          fmt::format("must be in (0, object_size_max = {}], is {}", c.object_size_max, c.object_size_min));
  require(c.object_size_max <= 0.9, "object_size_max", fmt::format("must be <= 0.9, is {}", c.object_size_max));
  const SceneSpec spec = make_scene_spec(c);
  require(spec.size_min_px >= kMinShapePx, "object_size_min",
          fmt::format("gives {} px shapes at image_size {}; need >= {} px so shapes stay recognisable",
                      spec.size_min_px, c.image_size, kMinShapePx));
  require(!c.shapes.empty(), "shapes", "must list at least one shape");
  require(!c.colours.empty(), "colours", "must list at least one colour");
  require_distinct(c.shapes, "shapes");
  require_distinct(c.colours, "colours");
  for (const std::string& s : c.shapes) shape_from_name(s, "shapes");
  for (int i = 0; i < 3; ++i) {
    require(c.background[i] >= 0 && c.background[i] <= 255, "background", "channels must be in 0..255");
  }
  for (const std::string& name : c.colours) {
    const auto& rgb = palette()[colour_index(name, "colours")].rgb;
    require(!(rgb[0] == c.background[0] && rgb[1] == c.background[1] && rgb[2] == c.background[2]), "background",
            fmt::format("equals the colour '{}'; shapes of that colour would be invisible", name));
  }
  require(c.cooccur_prob >= 0 && c.cooccur_prob <= 1, "cooccur_prob",
          fmt::format("must be in [0, 1], is {}", c.cooccur_prob));
}

// Ranges of the questions', tasks', candidates' and pairs' knobs.
void validate_items(const WorldConfig& c) {
  require(c.questions_per_image >= 0, "questions_per_image", "must be >= 0");
  require(!c.question_types.empty(), "question_types", "must list at least one type");
  require_distinct(c.question_types, "question_types");
  for (const std::string& t : c.question_types) question_type_from_name(t, "question_types");
  require(c.pope_per_image >= 0, "pope_per_image", "must be >= 0");
  // bench/pope/llava_pope_test.jsonl gives each split a block of kPopeQuestionIdBlock ids, as LLaVA's file does.
  require(2 * static_cast<int64_t>(c.num_eval_images) * c.pope_per_image < kPopeQuestionIdBlock, "pope_per_image",
          fmt::format("num_eval_images x pope_per_image x 2 must stay under {} (a POPE split's question-id block)",
                      kPopeQuestionIdBlock));
  require(c.num_text_tasks >= 0, "num_text_tasks", "must be >= 0");
  require(c.num_eval_text_tasks >= 0, "num_eval_text_tasks", "must be >= 0");
  require(!c.text_task_types.empty(), "text_task_types", "must list at least one type");
  require_distinct(c.text_task_types, "text_task_types");
  for (const std::string& t : c.text_task_types) text_task_type_from_name(t, "text_task_types");
  require(c.candidates_per_question >= 1, "candidates_per_question", "must be >= 1");
  const KindWeights& w = c.candidate_kind_weights;
  require(w.correct + w.partial + w.hallucinated + w.padded > 0, "candidate_kind_weights", "are all zero");
  require(!c.pair_rule.attributes.empty(), "pair_attributes", "must list at least one attribute");
  for (const std::string& a : c.pair_rule.attributes) {
    require(std::find(attribute_names().begin(), attribute_names().end(), a) != attribute_names().end(),
            "pair_attributes", fmt::format("unknown attribute '{}'; known: {}", a, fmt::join(attribute_names(), ", ")));
  }
  require(c.pair_rule.min_gap > 0, "pair_min_gap", fmt::format("must be > 0, is {}", c.pair_rule.min_gap));
}

}  // namespace

void WorldConfig::validate() const {
  validate_scenes(*this);
  validate_items(*this);
}

nlohmann::ordered_json WorldStats::to_json() const {
  return {{"train_images", train_images},   {"eval_images", eval_images},
          {"objects", objects},             {"objects_dropped", objects_dropped},
          {"vqa_train", vqa_train},         {"vqa_eval", vqa_eval},
          {"questions_skipped", questions_skipped},
          {"text_train", text_train},       {"text_eval", text_eval},
          {"scored_groups", scored_groups}, {"candidates", candidates},
          {"candidates_by_kind", candidates_by_kind},
          {"pairs", pairs.to_json()},
          {"pope_random", pope_random},     {"pope_popular", pope_popular},
          {"pope_adversarial", pope_adversarial},
          {"pope_images_with_fewer_probes", pope_images_with_fewer_probes},
          {"bench_pope", bench_pope},       {"bench_mm_vet", bench_mm_vet},
          {"bench_mt_bench", bench_mt_bench},
          {"bench_text_tasks_unpaired", bench_text_tasks_unpaired},
          {"files", files}};
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

namespace {

// Builds one world into a folder. Each member writes one part, in the order generate_world calls them; every
// part draws from its own sub-streams (rng.h), so the order of the parts does not change a byte.
class WorldBuilder {
 public:
  WorldBuilder(const WorldConfig& config, const fs::path& out_dir)
      : config_(config), out_dir_(out_dir), vocab_(make_vocabulary(config)) {}

  void scenes();            // images/*.png, ground_truth.jsonl
  void visual_questions();  // VQA rows; the training questions get scored candidates
  void text_tasks();        // text rows; the training tasks get scored candidates
  void pope();              // pope_*.jsonl over the held-out scenes
  void row_files();         // vqa_*, text_*, scored_candidates.jsonl, pairs.jsonl
  void bench();             // bench/: the held-out sets in the official POPE, MM-Vet and MT-Bench formats
  void manifest();          // manifest.json, last: its presence marks a complete world
  void log_summary() const;
  const WorldStats& stats() const { return stats_; }

 private:
  void write(const std::string& rel, const std::string& bytes);
  void add_group(const std::string& id, const std::string& image, const std::string& question,
                 const ResponseVariants& variants);

  const WorldConfig& config_;
  const fs::path out_dir_;
  const Vocabulary vocab_;
  WorldStats stats_;
  std::map<std::string, std::pair<size_t, std::string>> files_;  // relative path -> (bytes, sha256)
  std::vector<ImageTruth> train_, eval_;
  std::vector<nlohmann::ordered_json> vqa_train_, vqa_eval_, text_train_, text_eval_, scored_;
  std::vector<ScoredGroup> groups_;
  PopeSplits pope_;
};

void WorldBuilder::write(const std::string& rel, const std::string& bytes) {
  write_file_atomic(out_dir_ / rel, bytes);
  files_[rel] = {bytes.size(), sha256_hex(bytes)};
}

void WorldBuilder::scenes() {
  for (const auto& [split, count] : {std::pair<std::string, int>{"train", config_.num_train_images},
                                     std::pair<std::string, int>{"eval", config_.num_eval_images}}) {
    for (int i = 0; i < count; ++i) {
      int dropped = 0;
      ImageTruth truth = make_image_truth(config_, split, i, &dropped);
      stats_.objects += static_cast<int64_t>(truth.objects.size());
      stats_.objects_dropped += dropped;
      write("images/" + truth.image, encode_png(render(truth)));
      (split == "train" ? train_ : eval_).push_back(std::move(truth));
    }
  }
  stats_.train_images = static_cast<int64_t>(train_.size());
  stats_.eval_images = static_cast<int64_t>(eval_.size());
  if (stats_.objects_dropped > 0) {
    logger()->warn("{} of {} sampled objects found no free spot and were dropped (max_objects {} with shapes up to "
                   "{} of the image); lower max_objects or object_size_max to keep them",
                   stats_.objects_dropped, stats_.objects + stats_.objects_dropped, config_.max_objects,
                   config_.object_size_max);
  }
  std::vector<nlohmann::ordered_json> truth_rows;
  for (const auto* split : {&train_, &eval_}) {
    for (const ImageTruth& t : *split) truth_rows.push_back(to_json(t));
  }
  write("ground_truth.jsonl", jsonl(truth_rows));
}

// A training question's candidates, drawn from the question's own stream, as a scored row and a pair group.
void WorldBuilder::add_group(const std::string& id, const std::string& image, const std::string& question,
                             const ResponseVariants& variants) {
  Rng rng(derive_seed(config_.seed, kStreamCandidates, fnv1a64(id)));
  const std::vector<Candidate> candidates =
      make_candidates(variants, config_.candidates_per_question, config_.candidate_kind_weights, rng);
  scored_.push_back(scored_candidates_row(id, image, question, candidates));
  ScoredGroup group{id, image, question, {}};
  for (const Candidate& c : candidates) {
    ++stats_.candidates_by_kind[candidate_kind_name(c.kind)];
    group.candidates.push_back({c.response, c.scores.by_name()});
  }
  stats_.candidates += static_cast<int64_t>(candidates.size());
  groups_.push_back(std::move(group));
}

void WorldBuilder::visual_questions() {
  std::vector<QuestionType> types;
  for (const auto& t : config_.question_types) types.push_back(question_type_from_name(t, "question_types"));
  for (const auto* split : {&train_, &eval_}) {
    for (size_t i = 0; i < split->size(); ++i) {
      const ImageTruth& truth = (*split)[i];
      Rng rng(derive_seed(config_.seed, kStreamVqa, stream_index(truth.split, static_cast<int64_t>(i))));
      int skipped = 0;
      const std::vector<VqaItem> items =
          make_vqa_items(truth, vocab_, types, config_.questions_per_image, rng, &skipped);
      stats_.questions_skipped += skipped;
      for (const VqaItem& item : items) {
        if (truth.split != "train") {
          vqa_eval_.push_back(to_eval_row(item));
          continue;
        }
        vqa_train_.push_back(to_llava_row(item));
        Rng variant_rng(derive_seed(config_.seed, kStreamCandidates, fnv1a64(item.id + "/variants")));
        add_group(item.id, item.image, item.question, vqa_variants(item, truth, vocab_, variant_rng));
      }
    }
  }
  stats_.vqa_train = static_cast<int64_t>(vqa_train_.size());
  stats_.vqa_eval = static_cast<int64_t>(vqa_eval_.size());
}

void WorldBuilder::text_tasks() {
  std::vector<TextTaskType> types;
  for (const auto& t : config_.text_task_types) types.push_back(text_task_type_from_name(t, "text_task_types"));
  for (const auto& [split, count] : {std::pair<std::string, int>{"train", config_.num_text_tasks},
                                     std::pair<std::string, int>{"eval", config_.num_eval_text_tasks}}) {
    for (int i = 0; i < count; ++i) {
      Rng rng(derive_seed(config_.seed, kStreamText, stream_index(split, i)));
      TextTask task = make_text_task(rng.pick(types), rng);
      task.id = split == "train" ? fmt::format("text_{:06d}", i) : fmt::format("text_eval_{:06d}", i);
      if (split == "train") {
        text_train_.push_back(to_llava_row(task));
        add_group(task.id, "", task.question, text_variants(task));
      } else {
        text_eval_.push_back(to_eval_row(task));
      }
    }
  }
  stats_.text_train = static_cast<int64_t>(text_train_.size());
  stats_.text_eval = static_cast<int64_t>(text_eval_.size());
  stats_.scored_groups = static_cast<int64_t>(groups_.size());
}

// POPE probes over the held-out scenes, with statistics over the whole world.
void WorldBuilder::pope() {
  std::vector<ImageTruth> all_images = train_;
  all_images.insert(all_images.end(), eval_.begin(), eval_.end());
  const PopeStatistics pope_stats = pope_statistics(all_images, vocab_);
  pope_ = make_pope(eval_, pope_stats, vocab_, config_.pope_per_image, config_.seed);
  stats_.pope_images_with_fewer_probes = pope_.images_with_fewer_probes;
  auto pope_file = [&](const std::string& rel, const std::vector<PopeProbe>& probes) {
    std::vector<nlohmann::ordered_json> rows;
    for (const PopeProbe& p : probes) rows.push_back(to_json(p));
    write(rel, jsonl(rows));
    return static_cast<int64_t>(rows.size());
  };
  stats_.pope_random = pope_file("pope_random.jsonl", pope_.random);
  stats_.pope_popular = pope_file("pope_popular.jsonl", pope_.popular);
  stats_.pope_adversarial = pope_file("pope_adversarial.jsonl", pope_.adversarial);
  // The same probes as POPE's label files, which `runner score pope` reads from one folder.
  pope_file("bench/pope/labels/coco_pope_random.json", pope_.random);
  pope_file("bench/pope/labels/coco_pope_popular.json", pope_.popular);
  pope_file("bench/pope/labels/coco_pope_adversarial.json", pope_.adversarial);
}

void WorldBuilder::row_files() {
  // Preference pairs by the paper's rule.
  const PairResult pairs = build_pairs(groups_, config_.pair_rule, config_.seed);
  stats_.pairs = pairs.stats;
  std::vector<nlohmann::ordered_json> pair_rows;
  for (const PreferencePair& p : pairs.pairs) pair_rows.push_back(to_dpo_row(p));
  write("vqa_train.json", json_array(vqa_train_));
  write("vqa_eval.jsonl", jsonl(vqa_eval_));
  write("text_train.json", json_array(text_train_));
  write("text_eval.jsonl", jsonl(text_eval_));
  write("scored_candidates.jsonl", jsonl(scored_));
  write("pairs.jsonl", jsonl(pair_rows));
}

void WorldBuilder::bench() {
  const std::vector<nlohmann::ordered_json> pope_questions = pope_question_rows(pope_);
  write("bench/pope/llava_pope_test.jsonl", jsonl(pope_questions));
  stats_.bench_pope = static_cast<int64_t>(pope_questions.size());

  const MmVetBench mm_vet = mm_vet_bench(vqa_eval_);
  write("bench/mm_vet/llava-mm-vet.jsonl", jsonl(mm_vet.questions));
  write("bench/mm_vet/mm-vet.json", mm_vet.metadata.dump(2) + "\n");
  stats_.bench_mm_vet = static_cast<int64_t>(mm_vet.questions.size());

  const MtBenchBench mt_bench = mt_bench_bench(text_eval_);
  write("bench/mt_bench/question.jsonl", jsonl(mt_bench.questions));
  write("bench/mt_bench/reference_answer.jsonl", jsonl(mt_bench.references));
  stats_.bench_mt_bench = static_cast<int64_t>(mt_bench.questions.size());
  stats_.bench_text_tasks_unpaired = mt_bench.unpaired_tasks;
  if (mt_bench.unpaired_tasks > 0)
    logger()->info("synthetic: {} held-out text tasks give {} two-turn MT-Bench questions; the last task has no "
                   "partner and is not in bench/mt_bench (use an even num_eval_text_tasks)",
                   text_eval_.size(), mt_bench.questions.size());
}

void WorldBuilder::manifest() {
  stats_.files = static_cast<int64_t>(files_.size()) + 1;  // + the manifest
  nlohmann::ordered_json manifest;
  manifest["generator"] = "mmr-synthetic";
  manifest["format_version"] = kWorldFormatVersion;
  manifest["config"] = config_.to_json();
  manifest["counts"] = stats_.to_json();
  nlohmann::ordered_json listing = nlohmann::ordered_json::object();
  for (const auto& [rel, size_and_hash] : files_) {
    listing[rel] = {{"bytes", size_and_hash.first}, {"sha256", size_and_hash.second}};
  }
  manifest["files"] = std::move(listing);
  write_file_atomic(out_dir_ / "manifest.json", manifest.dump(2) + "\n");
}

void WorldBuilder::log_summary() const {
  logger()->info("synthetic world in {}: {} train + {} eval images, {} + {} visual questions, {} + {} text tasks, "
                 "{} scored groups -> {} pairs ({} skipped for spread < {}), POPE {} probes per split",
                 out_dir_.string(), stats_.train_images, stats_.eval_images, stats_.vqa_train, stats_.vqa_eval,
                 stats_.text_train, stats_.text_eval, stats_.scored_groups, stats_.pairs.pairs,
                 stats_.pairs.skipped_small_spread, config_.pair_rule.min_gap, stats_.pope_random);
}

}  // namespace

WorldStats generate_world(const WorldConfig& config, const fs::path& out_dir) {
  config.validate();
  WorldBuilder world(config, out_dir);
  world.scenes();
  world.visual_questions();
  world.text_tasks();
  world.pope();
  world.row_files();
  world.bench();
  world.manifest();
  world.log_summary();
  return world.stats();
}

}  // namespace mmr::synthetic
