// The `sft` algorithm: supervised fine-tuning with LoRA on conversation rows (LLaVA instruction data, text-only
// rows too): the LM loss on the assistant replies and their </s>, token mean per micro-batch. The paper's "standard
// SFT" baseline trains on the annotator's own answers. Defaults as the authors' SFT-style scripts: lr 4e-4,
// 3 epochs, batch 16 x 2 (quoted beside sft_defaults in core/lib/training/common.cpp; the scripts are named in plugins/algorithms/README.md).
#include "common.h"
#include "core/api/error.h"

namespace mmr::train {
namespace {

class Sft : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data, eval_data;
    TrainConfig train{sft_defaults()};
    void bind(OptionBinder& o) {
      bind_model(o, &model);
      bind_data(o, &data, "conversation rows");
      bind_eval_data(o, &eval_data);
      train.bind(o, sft_defaults());
    }
  };
  explicit Sft(const Options& o) : config_(read_options<Config>(o).train) {}
  static const char* summary() { return "supervised fine-tuning (LM loss on the replies) with LoRA"; }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    std::vector<ChatSample> train;
    std::shared_ptr<Plugin> holder;
    for (const auto& row : load_dataset(ctx, "data", "llava_json", holder).conversation_rows(dctx))
      train.push_back(to_sample(row));
    run_sft(ctx, *model, train, held_out_conversations(ctx), config_);
  }

 private:
  TrainConfig config_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "sft", "1.0", mmr::train::Sft)
