// The shape every benchmark plugin here shares. `runner score <name> key=value...` and a stage that names the
// file(s) to score run the same official scoring (score_config); a stage without them evaluates a model
// (evaluate). A plugin derives from ScoringBenchmark<its Config>, names itself in a ScoringSpec and implements
// the four hooks; MMR_PLUGIN finds the Config through the base's `Config` alias.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/logger.h>

#include <string>
#include <utility>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/evaluation.h"
#include "plugins/benchmarks/common/file_scoring.h"

namespace mmr::benchmarks {

struct ScoringSpec {
  const char* name;                   // "pope": the prefix of log lines
  const char* file_option;            // "answers": the option naming the file(s) to score, and their artifact's name
  const char* usage;                  // the `runner score` usage line, shown with argument errors
  std::vector<std::string> required;  // the options scoring needs besides the defaults
};

template <typename C>
class ScoringBenchmark : public Benchmark {
 public:
  using Config = C;

  void run(StageContext& ctx) override {
    const Config cfg = read_options<Config>(ctx.options());
    if (!given(ctx.options(), spec_.file_option)) {
      check_can_evaluate(ctx, spec_.file_option, spec_.usage);
      return evaluate(ctx, cfg);
    }
    require(ctx.options(), spec_.required);
    ctx.log().info("{}: scoring {}", spec_.name, describe(ctx.options(), cfg));
    record(ctx, score_config(ctx.options(), cfg), spec_.file_option, scored_files(cfg));
  }

  MetricList score(const Options& args) override {
    require(args, spec_.required);  // `runner score` arguments arrive unchecked: unknown keys are caught here too
    return score_config(args, read_options<Config>(args));
  }

 protected:
  explicit ScoringBenchmark(ScoringSpec spec) : spec_(std::move(spec)) {}

  // The official scores of the file(s) `cfg` names (`o`: where the options came from, for error messages).
  virtual MetricList score_config(const Options& o, const Config& cfg) const = 0;
  // The file(s) scored, copied into the stage folder beside the scores.
  virtual std::vector<std::string> scored_files(const Config& cfg) const = 0;
  // What run() logs before scoring, after "<name>: scoring ".
  virtual std::string describe(const Options& o, const Config& cfg) const {
    std::vector<std::string> quoted;
    for (const auto& f : scored_files(cfg)) quoted.push_back("'" + f + "'");
    return fmt::format("{}", fmt::join(quoted, ", "));
  }
  // Evaluates the stage's model: generates, writes the answers, judges when the benchmark has a judge, scores.
  virtual void evaluate(StageContext& ctx, const Config& cfg) = 0;

  // A ConfigError naming the first of `keys` not given (and any key this benchmark does not know).
  void require(const Options& o, const std::vector<std::string>& keys) const {
    check_keys(o, schema_of<Config>(), keys, spec_.usage);
  }

  const ScoringSpec spec_;
};

}  // namespace mmr::benchmarks
