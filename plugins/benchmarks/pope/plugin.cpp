// The POPE benchmark plugin: scores LLaVA answer files with eval_pope.py's rules (scoring.h).
//
//   runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]
//
// As an experiment stage, `{benchmark: pope, answers: ..., questions: ..., labels: ...}` scores an existing answer
// file and records every metric, the scored answers (copied into the stage folder) and scores.json.
// Deliberately not here yet: generating the answers with a model (that waits for the model plugin).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/plugin_api.h"
#include "plugins/benchmarks/pope/scoring.h"

namespace mmr::pope {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]";

// ---- argument helpers (the same in every benchmark plugin; see plugins/benchmarks/README.md) ----

// Unknown keys and missing required ones are ConfigErrors naming the key and listing the known ones, worded as
// the host's check_options words them. Stage options were checked by the host already; this catches
// `runner score` arguments, which arrive unchecked.
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  const bool command_line = o.source().rfind("runner score", 0) == 0;
  const std::string usage = command_line ? std::string("\nusage: ") + kUsage : "";
  std::vector<std::string> known;
  for (const auto& spec : schema) known.push_back(spec.name);
  const std::string known_text = fmt::format("{}", fmt::join(known, ", "));
  if (o.node().IsMap()) {
    for (const auto& kv : o.node()) {
      const std::string key = kv.first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end())
        throw ConfigError(fmt::format("{}unknown option '{}'; known options: {}{}", o.where(kv.second), key,
                                      known_text, usage));
    }
  }
  for (const auto& key : required) {
    if (o.has(key)) continue;
    std::string help;
    for (const auto& spec : schema)
      if (spec.name == key) help = spec.help;
    throw ConfigError(fmt::format("{}missing required option '{}' ({}); known options: {}{}",
                                  o.where(o.node()), key, help, known_text, usage));
  }
}

// A list option: a YAML list, or one string with comma-separated items (the command line's form).
[[maybe_unused]] std::vector<std::string> list_option(const Options& o, const std::string& key) {
  const YAML::Node v = o.node()[key];
  std::vector<std::string> items;
  if (v.IsSequence()) {
    for (const auto& item : v) {
      if (!item.IsScalar()) throw ConfigError(o.where(item) + "option '" + key + "': expected a list of strings");
      items.push_back(item.Scalar());
    }
  } else if (v.IsScalar()) {
    const std::string& s = v.Scalar();
    for (size_t start = 0;;) {
      const size_t comma = s.find(',', start);
      items.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  } else {
    throw ConfigError(o.where(v) + "option '" + key + "': expected a string, a comma-separated list or a YAML list");
  }
  for (const auto& item : items)
    if (item.empty())
      throw ConfigError(fmt::format("{}option '{}': empty item in '{}'", o.where(v), key, v.IsScalar() ? v.Scalar() : "the list"));
  return items;
}

// Records every metric, copies the scored file(s) into the stage folder as artifact `artifact` (one file: the
// copy; several: a folder <artifact>/ of copies), and writes the metrics to scores.json (artifact "scores").
void record(StageContext& ctx, const MetricList& metrics, const std::string& artifact,
            const std::vector<std::string>& files) {
  for (const auto& m : metrics) ctx.log_metric(m.name, m.value);
  fs::path folder = ctx.stage_dir();
  if (files.size() > 1) {
    folder /= artifact;
    fs::remove_all(folder);  // an earlier attempt's copies
    fs::create_directories(folder);
  }
  std::set<std::string> names;
  for (const auto& file : files) {
    const fs::path copy = folder / fs::path(file).filename();
    if (!names.insert(copy.filename().string()).second)
      throw ConfigError("two scored files are named '" + copy.filename().string() + "'; give them distinct names");
    if (fs::exists(copy) && fs::equivalent(copy, file))
      throw ConfigError("'" + file + "' is this stage's own copy of a scored file; point the stage at the original");
    fs::copy_file(file, copy, fs::copy_options::overwrite_existing);
  }
  ctx.add_artifact(artifact, files.size() == 1 ? folder / fs::path(files[0]).filename() : folder);
  nlohmann::ordered_json scores = nlohmann::ordered_json::object();
  for (const auto& m : metrics) scores[m.name] = m.value;
  const fs::path scores_path = ctx.stage_dir() / "scores.json";
  std::ofstream out(scores_path);
  out << scores.dump(2) << "\n";
  if (!out) throw IoError("cannot write '" + scores_path.string() + "'");
  ctx.add_artifact("scores", scores_path);
}

// ---- POPE ----

ScoreInputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"answers", "questions", "labels"});
  ScoreInputs in;
  in.answers_path = o.get<std::string>("answers");
  in.questions_path = o.get<std::string>("questions");
  in.check_alignment = o.get<bool>("check_alignment", true);
  const std::vector<std::string> labels = list_option(o, "labels");
  if (labels.size() == 1 && fs::is_directory(labels[0])) {
    in.label_files = find_label_files(labels[0]);
  } else {
    std::set<std::string> splits;
    for (const auto& path : labels) {
      if (!fs::exists(path))
        throw IoError(fmt::format("POPE label file '{}' (option 'labels') does not exist", path));
      LabelFile f{split_from_label_filename(fs::path(path).filename().string()), path};
      if (!splits.insert(f.split).second)
        throw ConfigError(fmt::format("{}option 'labels': split '{}' is given twice ('{}')",
                                      o.where(o.node()["labels"]), f.split, path));
      in.label_files.push_back(f);
    }
  }
  return in;
}

MetricList score_inputs(const ScoreInputs& in) {
  const ScoreResult result = score(in);
  MetricList metrics = to_metrics(result);
  // eval_pope.py ignores answers whose category has no label file; we count them so that is never silent.
  metrics.push_back({"unscored_answers", static_cast<double>(result.n_unscored_answers)});
  if (result.n_unscored_answers > 0)
    spdlog::warn("pope: {} answer(s) in '{}' belong to splits without a label file and were not scored",
                 result.n_unscored_answers, in.answers_path);
  return metrics;
}

class Pope : public Benchmark {
 public:
  explicit Pope(const Options&) {}
  static const char* summary() {
    return "POPE yes/no object hallucination: scores LLaVA answer files with eval_pope.py's rules (F1 per split)";
  }
  static OptionSchema option_schema() {
    return {
        {"answers", "path", "", "LLaVA answer JSONL to score (question_id, text); without it the stage would "
                                "evaluate a model, which needs the model plugin (not built yet)"},
        {"questions", "path", "", "LLaVA question JSONL (question_id, category, image, text); required with answers"},
        {"labels", "any", "", "folder of coco_pope_<split>.json files, or a list of them (comma-separated on the "
                              "command line); required with answers"},
        {"check_alignment", "bool", "true", "check that the i-th answer's question matches the i-th label line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("answers"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'answers', 'questions' "
                  "and 'labels' to score an existing answer file, or use `" + std::string(kUsage) + "`");
    const ScoreInputs in = inputs_from(o, option_schema());
    ctx.log().info("pope: scoring '{}' against {} label file(s)", in.answers_path, in.label_files.size());
    record(ctx, score_inputs(in), "answers", {in.answers_path});
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::pope

MMR_PLUGIN(Benchmark, "pope", "1.0.0", mmr::pope::Pope)
