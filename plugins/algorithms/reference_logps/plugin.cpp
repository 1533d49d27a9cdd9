// The `reference_logps` stage: annotates preference pairs with the reference model's response log-probs, in the
// seed's field names (DESIGN §6) — ref_win_logp / ref_rej_logp (sums), ref_win_avg_logp / ref_rej_avg_logp (token
// means) and ref_win_per_token_logp / ref_rej_per_token_logp — so DPO reads them from the rows and never holds a
// second model. Computed once per data set; the output (artifact `rows`) is a preference file any stage can read.
//
// Resumable: rows are appended to rows.partial.jsonl as each batch finishes; a rerun keeps the finished ones.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "common.h"
#include "core/lib/data/rows.h"
#include "core/api/error.h"

namespace mmr::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

class ReferenceLogps : public Algorithm {
 public:
  explicit ReferenceLogps(const Options& o) : batch_size_(o.get<int64_t>("batch_size")) {
    if (batch_size_ < 1) throw ConfigError(o.where(o.node()["batch_size"]) + "batch_size must be at least 1");
  }
  static const char* summary() { return "annotate preference pairs with the reference model's log-probs (ref_*_logp)"; }
  static OptionSchema option_schema() {
    return {{"model", "any", "", "the reference model (the base model: no new LoRA adapter)", true},
            data_option("preference pairs"),
            {"batch_size", "int", "8", "pairs per forward pass (both sides go in one batch)"}};
  }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    model->set_training(false);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    std::shared_ptr<Plugin> holder;
    std::vector<PreferenceRow> rows = load_dataset(ctx, "data", "preference", holder).preference_rows(dctx);
    if (rows.empty()) throw DataError("stage '" + ctx.stage_name() + "': the data has no preference pairs");

    std::vector<std::string> ids;
    for (const auto& r : rows) ids.push_back(r.id);
    ResumableJsonl out(ctx.stage_dir() / "rows.jsonl", ids);
    const size_t done = out.done();
    if (done > 0) ctx.log().info("reference log-probs: {} of {} rows already done, continuing", done, rows.size());

    auto progress = ctx.progress("reference log-probs", static_cast<int64_t>(rows.size()));
    progress->advance(static_cast<int64_t>(done));
    torch::NoGradGuard no_grad;
    double sum_c = 0, sum_r = 0;
    for (size_t i = done; i < rows.size(); i += static_cast<size_t>(batch_size_)) {
      const size_t end = std::min(rows.size(), i + static_cast<size_t>(batch_size_));
      std::vector<EncodedSample> samples;
      for (size_t j = i; j < end; ++j) samples.push_back(keep_last_reply(model->encode(side_sample(rows[j], true))));
      for (size_t j = i; j < end; ++j) samples.push_back(keep_last_reply(model->encode(side_sample(rows[j], false))));
      const SequenceLogps lp = model->sequence_logps(model->collate(samples, false), /*per_token=*/true);
      const std::vector<double> sums = to_vector(lp.sum), means = to_vector(lp.mean);
      const size_t n = end - i;
      for (size_t k = 0; k < n; ++k) {
        PreferenceRow& r = rows[i + k];
        r.ref_win_logp = sums[k], r.ref_rej_logp = sums[n + k];
        r.ref_win_avg_logp = means[k], r.ref_rej_avg_logp = means[n + k];
        r.ref_win_per_token_logp = to_vector(lp.per_token[k]);
        r.ref_rej_per_token_logp = to_vector(lp.per_token[n + k]);
        sum_c += sums[k], sum_r += sums[n + k];
        out.write(data::to_json(r));
      }
      out.flush();
      progress->advance(static_cast<int64_t>(n));
      if (ctx.stop_requested()) throw Interrupted();
    }
    progress->finish();
    out.finish();
    ctx.add_artifact("rows", ctx.stage_dir() / "rows.jsonl");
    ctx.log_metric("pairs", static_cast<double>(rows.size()));
    if (done == 0) {
      ctx.log_metric("mean_ref_chosen_logp", sum_c / static_cast<double>(rows.size()));
      ctx.log_metric("mean_ref_rejected_logp", sum_r / static_cast<double>(rows.size()));
    }
  }

 private:
  int64_t batch_size_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "reference_logps", "1.0", mmr::train::ReferenceLogps)
