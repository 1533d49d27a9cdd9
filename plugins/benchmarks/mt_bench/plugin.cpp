// The MT-Bench benchmark plugin: scores FastChat single-answer judgment files with show_result.py's arithmetic
// (scoring.h).
//
//   runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]
//
// As an experiment stage, `{benchmark: mt_bench, judgments: ..., questions: ...}` records every metric, the judgment
// file (copied into the stage folder) and scores.json.
// Deliberately not here yet: answering with a model and judging with a judge (model and judge plugins).
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
#include "plugins/benchmarks/mt_bench/scoring.h"

namespace mmr::mt_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]";

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

// ---- MT-Bench ----

struct Inputs {
  std::string judgments, questions;
  ScoreOptions options;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"judgments"});
  Inputs in;
  in.judgments = o.get<std::string>("judgments");
  in.questions = o.get<std::string>("questions", "");
  if (o.has("models")) in.options.model_list = list_option(o, "models");
  return in;
}

MetricList score_inputs(const Inputs& in) {
  MetricList metrics = score_files(in.judgments, in.questions, in.options);
  // show_result.py prints nothing for a --model-list name without judgments; we say so.
  for (const auto& model : in.options.model_list) {
    const bool found = std::any_of(metrics.begin(), metrics.end(),
                                   [&](const MetricValue& m) { return m.name.rfind(model + "/", 0) == 0; });
    if (!found)
      throw DataError(fmt::format("{}: no judgments for model '{}' (option 'models')", in.judgments, model));
  }
  if (metrics.empty()) throw DataError(in.judgments + ": no judgments to score");
  return metrics;
}

class MtBench : public Benchmark {
 public:
  explicit MtBench(const Options&) {}
  static const char* summary() {
    return "MT-Bench: scores FastChat single-answer judgment files with show_result.py's arithmetic "
           "(mean score per turn and overall, per model)";
  }
  static OptionSchema option_schema() {
    return {
        {"judgments", "path", "", "FastChat judgment JSONL (model_judgment/<judge>_single.jsonl) to score; without "
                                  "it the stage would evaluate a model, which needs the model plugin (not built yet)"},
        {"questions", "path", "", "MT-Bench question.jsonl: adds the per-category means and checks question ids"},
        {"models", "any", "", "only these models (show_result.py's --model-list): a list, comma-separated on the "
                              "command line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("judgments"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'judgments' (and "
                  "'questions') to score an existing judgment file, or use `" + std::string(kUsage) + "`");
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("mt_bench: scoring '{}'", in.judgments);
    record(ctx, score_inputs(in), "judgments", {in.judgments});
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::mt_bench

MMR_PLUGIN(Benchmark, "mt_bench", "1.0.0", mmr::mt_bench::MtBench)
