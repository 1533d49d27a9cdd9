// The `steerlm` algorithm: attribute-conditioned SFT (Dong et al. 2023). Every scored candidate becomes a training
// conversation whose user turn carries its five 0-4 scores ("Helpfulness:3,Correctness:4,...", core/steer.h), so
// the model learns what each attribute value reads like. At evaluation the model is conditioned on target values
// with the llava model's `steer_attributes` option (default here: all 4), written to the `steer` artifact.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "common.h"
#include "core/api/error.h"
#include "steer.h"

namespace mmr::train {
namespace {

class SteerLm : public Algorithm {
 public:
  explicit SteerLm(const Options& o)
      : config_(TrainConfig::from(o)), template_(o.get<std::string>("attribute_template")),
        target_(o.get<std::string>("target_attributes")) {
    if (template_.find("{question}") == std::string::npos || template_.find("{attributes}") == std::string::npos)
      throw ConfigError(o.where(o.node()["attribute_template"]) +
                        "attribute_template must contain {question} and {attributes}");
  }
  static const char* summary() { return "SteerLM: attribute-conditioned supervised fine-tuning"; }
  static OptionSchema option_schema() {
    const TrainDefaults d = sft_defaults();
    return concat({model_option(), data_option("scored candidates"), eval_data_option(),
                   {"attribute_template", "string", "\"{question}\\n{attributes}\"",
                    "how the attribute string joins the user turn"},
                   {"target_attributes", "string", "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4",
                    "the conditioning to evaluate with (recorded in the `steer` artifact)"}},
                  train_option_schema(d));
  }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    std::shared_ptr<Plugin> holder;
    const auto rows = load_dataset(ctx, "data", "scored_candidates", holder).scored_candidates_rows(dctx);
    const std::vector<ChatSample> train = conditioned(rows);
    ctx.log_metric("data/questions", static_cast<double>(rows.size()));
    ctx.log_metric("data/conditioned_examples", static_cast<double>(train.size()));

    std::vector<ChatSample> held_out;
    if (ctx.options().has("eval_data")) {
      std::shared_ptr<Plugin> eh;
      DataContext ectx = DataContext::for_stage(ctx, "eval_data/");
      held_out = conditioned(load_dataset(ctx, "eval_data", "scored_candidates", eh).scored_candidates_rows(ectx));
    }
    run_sft(ctx, *model, train, held_out, config_);

    const auto path = ctx.stage_dir() / "steer.json";
    std::ofstream(path) << nlohmann::json{{"steer_template", template_}, {"steer_attributes", target_}}.dump(2) << "\n";
    ctx.add_artifact("steer", path);
  }

 private:
  // Every candidate as a conversation whose user turn carries its scores.
  std::vector<ChatSample> conditioned(const std::vector<ScoredCandidatesRow>& rows) const {
    std::vector<ChatSample> out;
    for (const auto& row : rows)
      for (const auto& cand : row.candidates)
        out.push_back(to_sample({{"human", apply_steer_template(template_, row.question, steer_attribute_string(cand.scores))},
                                 {"gpt", cand.response}},
                                row.images));
    return out;
  }

  TrainConfig config_;
  std::string template_, target_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "steerlm", "1.0", mmr::train::SteerLm)
