// The `judge_agreement` benchmark: how a judge's attribute scores agree with human preferences (the paper's
// Figure 3), as Pearson's r per attribute (scoring.h). It measures a judge, not a model: the `annotate` stage
// scores both responses of human-labelled pairs, and this stage scores that file.
//
//   runner score judge_agreement scored=FILE
//   - {name: annotate, algorithm: annotate, candidates: human_pairs.jsonl, judge: {...}}
//   - {name: agreement, benchmark: judge_agreement, scored: "${artifact:annotate/scored_candidates}"}
//
// Metrics: pearson/<attribute> (Helpfulness, Correctness, Coherence, Complexity, Verbosity), pearson/quality (their
// first three summed), n_pairs, n_skipped. Stage artifacts: `scored` (a copy), `scores`.
#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/file_scoring.h"
#include "plugins/benchmarks/judge_agreement/scoring.h"

namespace mmr::judge_agreement {
namespace {

constexpr const char* kUsage = "runner score judge_agreement scored=FILE";

class JudgeAgreement : public Benchmark {
 public:
  struct Config {
    std::string scored;
    void bind(OptionBinder& o) {
      o.bind("scored", &scored, "", "the annotate stage's scored-candidates JSONL for pairs of two responses with the "
                                    "human label `preference` (1 or 2)", "path");
    }
  };

  explicit JudgeAgreement(const Options&) {}
  static const char* summary() {
    return "agreement of a judge's attribute scores with human preferences (Pearson's r per attribute; Figure 3)";
  }

  void run(StageContext& ctx) override {
    const Config cfg = checked(ctx.options());
    benchmarks::record(ctx, agreement_metrics(read_scored_pairs(cfg.scored)), "scored", {cfg.scored});
  }
  MetricList score(const Options& args) override { return agreement_metrics(read_scored_pairs(checked(args).scored)); }

 private:
  static Config checked(const Options& o) {
    benchmarks::check_keys(o, schema_of<Config>(), {"scored"}, kUsage);
    return read_options<Config>(o);
  }
};

}  // namespace
}  // namespace mmr::judge_agreement

MMR_PLUGIN(Benchmark, "judge_agreement", "1.0.0", mmr::judge_agreement::JudgeAgreement)
