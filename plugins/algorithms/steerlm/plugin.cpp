// The `steerlm` algorithm: attribute-conditioned SFT (Dong et al. 2023). Every scored candidate becomes a training
// conversation whose user turn carries its five 0-4 scores ("Helpfulness:3,Correctness:4,...", steer.h), so the
// model learns what each attribute value reads like. At evaluation the model is conditioned on target values
// (default here: all 4) through the generic prompt-conditioning hook of the model interface: the `steer` artifact
// (steer.json) holds the `prompt_template` to give the model (ChatModel::set_prompt_template, or the model
// plugin's `prompt_template` option).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "common.h"
#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "steer.h"

namespace mmr::train {
namespace {

class SteerLm : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data, eval_data;
    std::string attribute_template, target_attributes;
    TrainConfig train{sft_defaults()};
    void bind(OptionBinder& o) {
      bind_model(o, &model);
      bind_data(o, &data, "scored candidates");
      bind_eval_data(o, &eval_data);
      // The fork's data preparation (mllm-dpo, add_attribute_and_to_output_for_sft_dataset):
      //   human_turn['value'] += f'\n{attribute_start}\n{row["attributes_string"]}'
      //   attribute_start = 'Please answer the question such that your response is in the following attributes
      //                      in 5-point Likert scale:'
      o.bind("attribute_template", &attribute_template,
             "{question}\nPlease answer the question such that your response is in the following attributes in "
             "5-point Likert scale:\n{attributes}",
             "how the attribute string joins the user turn (default: the authors' string)");
      o.bind("target_attributes", &target_attributes,
             "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4",
             "the conditioning to evaluate with (recorded in the `steer` artifact)");
      train.bind(o, sft_defaults());
      o.check(attribute_template.find("{question}") != std::string::npos &&
                  attribute_template.find("{attributes}") != std::string::npos,
              "attribute_template", "must contain {question} and {attributes}");
    }
  };
  explicit SteerLm(const Options& o) : SteerLm(read_options<Config>(o)) {}
  explicit SteerLm(const Config& c)
      : config_(c.train), template_(c.attribute_template), target_(c.target_attributes) {}
  static const char* summary() { return "SteerLM: attribute-conditioned supervised fine-tuning"; }

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

    // The conditioning to evaluate with, as the model interface's prompt template ("{prompt}" = the user's text).
    const auto path = ctx.stage_dir() / "steer.json";
    const std::string prompt_template = apply_steer_template(template_, "{prompt}", target_);
    write_file_atomic(path, nlohmann::json{{"prompt_template", prompt_template}}.dump(2) + "\n");
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
