// The `llava` model plugin: LLaVA-1.5 (CLIP ViT + projector + LLaMA) in LibTorch, with LoRA, PEFT adapters,
// generation with a KV cache, and sequence log-probs. Loads llava-hf and original LLaVA checkpoints.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "image_cache.h"
#include "core/api/model_api.h"
#include "core/lib/image/image.h"
#include "core/lib/tokenizer/tokenizer.h"
#include "modules.h"

namespace mmr::llava {

// The plugin's options, declared once each in bind() (llava.cpp); a default-constructed LlavaOptions holds the
// defaults (tests and tools build the model from one directly).
struct LlavaOptions {
  std::string path;          // checkpoint folder (config.json, *.safetensors, tokenizer.model)
  std::string vision_tower;  // original layout: the CLIP checkpoint folder (default: mm_vision_tower)
  std::string adapter;       // PEFT adapter folder to load
  std::vector<std::string> merge_adapters;  // PEFT adapters folded into the weights first, in order
  std::string dtype;
  std::string device;
  bool random_init;
  std::string shape;         // with random_init and no path: llava-1.5-7b | llava-1.5-13b
  std::string tokenizer;     // tokenizer.model or its folder (default: path)
  uint64_t seed;       // new LoRA weights (a training stage gives it the trial seed unless the node names one)
  uint64_t init_seed;  // random_init's weights: its own, so every stage that builds the same model gets the same
  int64_t lora_r;            // > 0: add a new LoRA adapter
  double lora_alpha;
  double lora_dropout;
  bool lora_rslora;
  std::vector<std::string> lora_target_modules;
  bool train_projector;
  int64_t max_length;        // tokens after image expansion; longer rows are truncated and counted
  std::string prompt_template;  // ChatModel::set_prompt_template at construction ("": off)
  std::string image_aspect_ratio;  // pad | center_crop | resize ("": the checkpoint's image_aspect_ratio)

  LlavaOptions();
  void bind(OptionBinder& o);
};

struct ExpandedRow;  // one row of an expanded batch (forward.cpp)
struct DecodeState;  // generation's buffers and CUDA graphs (generate.cpp)
struct VisionGraphs;  // the vision tower and projector as CUDA graphs, for inference (forward.cpp)
struct SharedPrefixes;  // generation's rows grouped by a shared image prefix (generate.cpp)

class LlavaModel : public LanguageModel {
 public:
  using Config = LlavaOptions;
  explicit LlavaModel(const LlavaOptions& options);
  explicit LlavaModel(const Options& options);  // the plugin constructor
  static const char* summary();

  EncodedSample encode(const ChatSample& sample) const override;
  EncodedSample encode_prompt(const ChatSample& sample) const override;
  ModelBatch collate(const std::vector<EncodedSample>& samples, bool left_pad) const override;
  torch::Tensor logits(const ModelBatch& batch) override;
  SequenceLogps sequence_logps(const ModelBatch& batch, bool per_token = false) override;
  torch::Tensor lm_loss(const ModelBatch& batch) override;
  std::optional<std::pair<SequenceLogps, SequenceLogps>> shared_prompt_logps(const std::vector<SharedPromptPair>& pairs,
                                                                             bool per_token, bool shared_dropout) override;
  std::vector<ParameterGroup> parameter_groups() override;
  void set_adapters_enabled(bool on) override;
  void set_prompt_template(const std::string& tmpl) override { options_.prompt_template = tmpl; }
  bool set_image_preprocessing(const std::string& mode) override;
  void set_training(bool on) override;
  void set_activation_checkpointing(bool on) override;
  std::vector<Generation> generate(const std::vector<ChatSample>& prompts, const GenerationConfig& config) override;
  // Continuous batching (decode_batch.cpp). The model's weights must not change while a batch lives.
  std::unique_ptr<DecodeBatch> start_batch() override;
  void save_adapter(const std::filesystem::path& dir) const override;
  void load_adapter(const std::filesystem::path& dir) override;
  // Adds an adapter's LoRA delta (B·A·scaling) to the base weights and takes its projector: the adapter becomes
  // part of the model (PEFT's merge_and_unload), and a new LoRA can be trained on top.
  void fold_adapter(const std::filesystem::path& dir);
  torch::Device device() const override { return device_; }
  torch::Dtype dtype() const override { return dtype_; }

  // Below: for tests and tools.
  const LlavaConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  torch::Tensor image_features(const torch::Tensor& pixel_values);  // (N, 3, S, S) -> (N, P, D)
  torch::Tensor pixel_values_for(const std::string& image_path) const;  // (3, S, S) float32
  // The sequence after image expansion: embeds (B, T', D), labels (B, T'), attention mask (B, T').
  struct Expanded {
    torch::Tensor embeds, labels, attention_mask, position_ids;
    std::vector<std::vector<int64_t>> text_positions;  // per row: indices in T' that hold text tokens
    bool left_padded = false;
    bool padded = false;  // some row is shorter than the batch
  };
  Expanded expand(const ModelBatch& batch);
  void merge_lora();
  void unmerge_lora();
  int64_t truncated_rows() const { return truncated_rows_; }
  // Rows whose image prefix generate() took from another row of their batch instead of prefilling it.
  int64_t shared_prefix_rows() const { return shared_prefix_rows_; }

 private:
  void set_up_images(const std::string& tokenizer_path);
  void build_modules();
  void load_checkpoint();
  void random_init();
  void add_lora(int64_t r, double alpha, double dropout, bool rslora, const std::vector<std::string>& targets);
  void freeze_base_projector();  // keeps the loaded projector for set_adapters_enabled(false)
  void truncate(ExpandedRow& row);
  // One decoding step's choice of the next token per row: greedy, or temperature/top-k/top-p sampling.
  torch::Tensor next_tokens(torch::Tensor logits, const GenerationConfig& g, at::Generator& gen) const;
  void finish_generation(std::vector<Generation>& out, const torch::Tensor& prompt_tokens,
                         const GenerationConfig& g) const;
  std::optional<SharedPrefixes> shared_prefixes(const std::vector<EncodedSample>& prompts) const;
  int64_t expanded_length(const EncodedSample& s) const;  // its tokens once each image is its patches
  torch::Tensor prefill(DecodeState& d, const Expanded& e);  // generate.cpp: the first new token's logits
  torch::Tensor prefill_shared(DecodeState& d, const SharedPrefixes& s, const Expanded& heads, const Expanded& tails);
  std::string reply_text(const Generation& o) const;  // its tokens' text so far, EOS left out
  void finish_text(Generation& o, const GenerationConfig& g) const;
  friend class LlavaDecodeBatch;
  void prepare_for_inference();  // generate.cpp
  // Drops generation's buffers and captured graphs: whatever changes which weights or branches a step reads (an
  // adapter loaded, merged or turned off, weights moved) calls it.
  void forget_decode_state();
  std::string peft_prefix() const;  // "base_model.model.language_model.model." (llava-hf) / "base_model.model.model."
  std::string projector_name() const;  // "multi_modal_projector" / "model.mm_projector"
  torch::Tensor hidden_states(const Expanded& e, std::vector<LayerCache>* caches);
  torch::Tensor vision_forward(const torch::Tensor& pixels);  // image_features, always eager (forward.cpp)

  LlavaOptions options_;
  LlavaConfig config_;
  std::shared_ptr<Tokenizer> tokenizer_;
  image::PreprocessConfig image_config_;
  // ~43 MB at 336x336; MMR_IMAGE_CACHE=0: none kept (each batch decodes its images again, for measuring)
  std::shared_ptr<ImageCache> images_ = std::make_shared<ImageCache>(image_cache_capacity());
  torch::Device device_{torch::kCPU};
  torch::Dtype dtype_ = torch::kFloat32;
  int64_t vision_layer_ = 0;
  ClipVision vision_{nullptr};
  Projector projector_{nullptr};
  Projector base_projector_{nullptr};  // the projector as loaded, when train_projector trains a copy (PEFT's
                                       // modules_to_save); used while adapters are disabled
  bool adapters_enabled_ = true;
  bool merged_for_inference_ = false;  // an adapter folded into the weights by generate()
  bool trained_ = false;
  std::shared_ptr<DecodeState> decode_;  // handed to a trainer (parameter_groups, set_training(true)): generate() merges nothing
  std::shared_ptr<VisionGraphs> vision_graphs_;  // dropped with decode_ (forget_decode_state)
  Llama llama_{nullptr};
  std::shared_ptr<torch::nn::Module> root_;
  int64_t truncated_rows_ = 0;
  int64_t shared_prefix_rows_ = 0;
  std::vector<std::string> lora_target_modules_;
};

}  // namespace mmr::llava
