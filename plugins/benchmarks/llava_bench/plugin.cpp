// The LLaVA-Bench (in-the-wild) benchmark plugin: scores GPT-4 review files with summarize_gpt_review.py's
// arithmetic (scoring.h).
//
//   runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]
//
// One review file gives the library's metrics ("all", "llava_bench_conv", ...). Several files (the published
// 72.8 / 72.7 / 72.1 of LLaVA-1.5-13B are three review runs) give one block per file, "<config>/all", ..., where
// <config> is the name summarize_gpt_review.py prints for the file, plus "mean/<category>": the mean over the files
// of each relative score.
// As an experiment stage, `{benchmark: llava_bench, reviews: ...}` records every metric, the review files (copied
// into the stage folder) and scores.json.
// Deliberately not here yet: answering with a model and reviewing with a judge (model and judge plugins).
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
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace mmr::llava_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = "runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]";

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

// ---- LLaVA-Bench ----

struct Inputs {
  std::vector<std::string> reviews;
  std::set<int64_t> ignore;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"reviews"});
  Inputs in;
  in.reviews = list_option(o, "reviews");
  if (o.has("ignore")) {
    for (const std::string& id : list_option(o, "ignore")) {
      size_t used = 0;
      int64_t value = 0;
      try {
        value = std::stoll(id, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != id.size() || id.empty())
        throw ConfigError(fmt::format("{}option 'ignore': expected integer question ids, found '{}'",
                                      o.where(o.node()["ignore"]), id));
      in.ignore.insert(value);
    }
  }
  return in;
}

MetricList score_inputs(const Inputs& in) {
  std::vector<ReviewSummary> summaries;
  for (const auto& path : in.reviews) summaries.push_back(summarize_file(path, in.ignore));
  if (summaries.size() == 1) return to_metrics(summaries[0]);

  // Several files: a block per file, named by its config, then the mean of each relative score.
  std::set<std::string> configs;
  for (size_t i = 0; i < summaries.size(); ++i)
    if (!configs.insert(summaries[i].config).second)
      throw ConfigError(fmt::format("review files '{}' and another both have the config name '{}' (the file name "
                                    "without gpt4_text_ and .jsonl); give them distinct names",
                                    in.reviews[i], summaries[i].config));
  MetricList out;
  for (const auto& s : summaries)
    for (const auto& m : to_metrics(s)) out.push_back({s.config + "/" + m.name, m.value});
  for (const CategoryScore& c : summaries[0].categories) {
    double sum = 0;
    size_t n = 0;
    for (const auto& s : summaries)
      for (const CategoryScore& other : s.categories)
        if (other.name == c.name) sum += other.relative, ++n;
    if (n == summaries.size()) {
      out.push_back({"mean/" + c.name, sum / static_cast<double>(n)});
    } else {
      spdlog::warn("llava_bench: category '{}' is in {} of {} review files; no mean reported for it", c.name, n,
                   summaries.size());
    }
  }
  return out;
}

class LlavaBench : public Benchmark {
 public:
  explicit LlavaBench(const Options&) {}
  static const char* summary() {
    return "LLaVA-Bench in-the-wild: scores GPT-4 review files with summarize_gpt_review.py's arithmetic "
           "(100 x model / reference, per category and overall)";
  }
  static OptionSchema option_schema() {
    return {
        {"reviews", "any", "", "review JSONL file(s) written by eval_gpt_review_bench.py: a path or a list "
                               "(comma-separated on the command line); without it the stage would evaluate a "
                               "model, which needs the model plugin (not built yet)"},
        {"ignore", "any", "", "question ids to skip (the script's --ignore): a list, comma-separated on the "
                              "command line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("reviews"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'reviews' to score "
                  "existing review files, or use `" + std::string(kUsage) + "`");
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("llava_bench: scoring {} review file(s)", in.reviews.size());
    record(ctx, score_inputs(in), "reviews", in.reviews);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::llava_bench

MMR_PLUGIN(Benchmark, "llava_bench", "1.0.0", mmr::llava_bench::LlavaBench)
