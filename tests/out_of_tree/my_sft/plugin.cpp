// `my_sft`: the smallest useful algorithm plugin, written only against mmrunner's public headers. Plain SGD on the
// LM loss of conversation rows, one micro-batch per step; logs the loss per step and writes the PEFT adapter.
#include <spdlog/spdlog.h>

#include "core/api/dataset_api.h"
#include "core/api/model_api.h"
#include "core/api/plugin_api.h"

namespace {

class MySft : public mmr::Algorithm {
 public:
  struct Config {
    YAML::Node model, data;
    int64_t steps;
    double lr;
    void bind(mmr::OptionBinder& o) {
      o.required("model", &model, "the model to train (a model node with lora_r > 0)");
      o.required("data", &data, "a dataset node that provides conversation rows");
      o.bind("steps", &steps, 4, "SGD steps over the whole data");
      o.bind("lr", &lr, 1e-2, "SGD learning rate");
      o.check(steps >= 1, "steps", "must be at least 1");
    }
  };

  explicit MySft(const mmr::Options& options) : cfg_(mmr::read_options<Config>(options)) {}
  static const char* summary() { return "out-of-tree SFT example (SGD on the LM loss)"; }

  void run(mmr::StageContext& ctx) override {
    auto model_plugin = ctx.create(mmr::PluginKind::Model, cfg_.model);
    auto* model = dynamic_cast<mmr::LanguageModel*>(model_plugin.get());
    if (!model) throw mmr::ConfigError("my_sft: the model is not a LanguageModel");
    auto data_plugin = ctx.create(mmr::PluginKind::Dataset, cfg_.data);
    mmr::DataContext dctx = mmr::DataContext::for_stage(ctx, "data/");
    std::vector<mmr::EncodedSample> samples;
    for (const auto& row : mmr::dataset_provider(*data_plugin).conversation_rows(dctx)) {
      mmr::ChatSample sample;
      for (const auto& turn : row.turns) sample.turns.push_back({turn.from, turn.value});
      sample.images = row.images;
      samples.push_back(model->encode(sample));
    }
    const mmr::ModelBatch batch = model->collate(samples, /*left_pad=*/false);
    std::vector<torch::Tensor> params;
    for (auto& [name, tensor] : model->trainable_parameters()) params.push_back(tensor);
    torch::optim::SGD sgd(params, torch::optim::SGDOptions(cfg_.lr));
    model->set_training(true);
    for (int64_t step = 1; step <= cfg_.steps; ++step) {
      sgd.zero_grad();
      torch::Tensor loss = model->lm_loss(batch);
      loss.backward();
      sgd.step();
      ctx.log_metric("train/loss", loss.item<double>(), step);
      ctx.log().info("my_sft: step {} loss {:.4f}", step, loss.item<double>());
    }
    model->save_adapter(ctx.stage_dir() / "adapter");
    ctx.add_artifact("adapter", ctx.stage_dir() / "adapter");
  }

 private:
  Config cfg_;
};

}  // namespace

MMR_PLUGIN(Algorithm, "my_sft", "0.1.0", MySft)
