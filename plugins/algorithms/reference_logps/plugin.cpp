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
#include "core/lib/util/kill_point.h"
#include "core/api/error.h"

namespace mmr::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

std::vector<const EncodedSample*> pointers(const std::vector<EncodedSample>& samples) {
  std::vector<const EncodedSample*> out;
  for (const auto& s : samples) out.push_back(&s);
  return out;
}

class ReferenceLogps : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data;
    int64_t batch_size;
    std::string prefix_sharing;
    void bind(OptionBinder& o) {
      o.required("model", &model, "the reference model (the base model: no new LoRA adapter)", "model");
      bind_data(o, &data, "preference pairs");
      o.bind("batch_size", &batch_size, 8, "pairs per forward pass (both sides go in one batch)");
      o.check(batch_size >= 1, "batch_size", "must be at least 1");
      bind_prefix_sharing(o, &prefix_sharing);
    }
  };
  explicit ReferenceLogps(const Options& o) : ReferenceLogps(read_options<Config>(o)) {}
  explicit ReferenceLogps(const Config& c) : batch_size_(c.batch_size), prefix_sharing_(c.prefix_sharing) {}
  static const char* summary() { return "annotate preference pairs with the reference model's log-probs (ref_*_logp)"; }

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
    // The means cover every row: a resumed run adds the rows an earlier run wrote (in order, as an uninterrupted
    // run would), so its metrics are the uninterrupted run's (the kill-point campaign found them missing).
    double sum_c = 0, sum_r = 0;
    for (const std::string& line : out.kept()) {
      const json row = json::parse(line);
      sum_c += row.at("ref_win_logp").get<double>(), sum_r += row.at("ref_rej_logp").get<double>();
    }
    for (size_t i = done; i < rows.size(); i += static_cast<size_t>(batch_size_)) {
      const size_t end = std::min(rows.size(), i + static_cast<size_t>(batch_size_));
      std::vector<EncodedSample> chosen, rejected;
      for (size_t j = i; j < end; ++j) {
        chosen.push_back(keep_last_reply(model->encode(side_sample(rows[j], true))));
        rejected.push_back(keep_last_reply(model->encode(side_sample(rows[j], false))));
      }
      const PairSides lp = pair_logps(*model, pointers(chosen), pointers(rejected), /*per_token=*/true, prefix_sharing_);
      const std::vector<double> c_sum = to_vector(lp.chosen.sum), r_sum = to_vector(lp.rejected.sum);
      const std::vector<double> c_mean = to_vector(lp.chosen.mean), r_mean = to_vector(lp.rejected.mean);
      for (size_t k = 0; k < end - i; ++k) {
        PreferenceRow& r = rows[i + k];
        r.ref_win_logp = c_sum[k], r.ref_rej_logp = r_sum[k];
        r.ref_win_avg_logp = c_mean[k], r.ref_rej_avg_logp = r_mean[k];
        r.ref_win_per_token_logp = to_vector(lp.chosen.per_token[k]);
        r.ref_rej_per_token_logp = to_vector(lp.rejected.per_token[k]);
        sum_c += c_sum[k], sum_r += r_sum[k];
        out.write(data::to_json(r));
      }
      const size_t n = end - i;
      out.flush();
      kill_point("reflogps.after_batch");  // a prefix of the rows in rows.partial.jsonl
      progress->advance(static_cast<int64_t>(n));
      if (ctx.stop_requested()) throw Interrupted();
    }
    progress->finish();
    kill_point("reflogps.before_finish");  // every row in the partial file, not yet renamed
    out.finish();
    ctx.add_artifact("rows", ctx.stage_dir() / "rows.jsonl");
    ctx.log_metric("pairs", static_cast<double>(rows.size()));
    ctx.log_metric("mean_ref_chosen_logp", sum_c / static_cast<double>(rows.size()));
    ctx.log_metric("mean_ref_rejected_logp", sum_r / static_cast<double>(rows.size()));
  }

 private:
  int64_t batch_size_;
  std::string prefix_sharing_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "reference_logps", "1.0", mmr::train::ReferenceLogps)
