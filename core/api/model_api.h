// The model interface algorithms and benchmarks are written against (DESIGN §4). Torch-facing, so only plugins
// include it; the host never does. A second model family is a second plugin implementing LanguageModel.
//
// Shape letters: B batch, T tokens (with one -200 placeholder per image), T' tokens after the placeholders are
// expanded into P patch features each, N images in the batch, V vocabulary, D width.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/api/chat_api.h"
#include "core/api/plugin_api.h"

namespace mmr {

// A tokenized sample: ids with one placeholder id (-200) per image, and labels (-100 where no loss).
struct EncodedSample {
  std::vector<int64_t> input_ids;
  std::vector<int64_t> labels;
  std::vector<std::string> images;
  bool mismatch = false;  // LLaVA's tokenization mismatch: every label masked (counted by the caller)
};

// A padded batch on the model's device.
struct ModelBatch {
  torch::Tensor input_ids;       // (B, T) int64, placeholders included
  torch::Tensor labels;          // (B, T) int64
  torch::Tensor attention_mask;  // (B, T) int64, 0 at padding
  torch::Tensor pixel_values;    // (N, 3, H, W) or undefined when no image
  bool left_padded = false;
};

// Log-probabilities of the labelled (response) tokens, LLaVA's get_batch_logps.
struct SequenceLogps {
  torch::Tensor sum;    // (B)
  torch::Tensor mean;   // (B) sum / count
  torch::Tensor count;  // (B) number of labelled tokens
  std::vector<torch::Tensor> per_token;  // B tensors (count_b), only when asked for
};

// A named set of trainable tensors (see LanguageModel::parameter_groups).
struct ParameterGroup {
  std::string name;
  std::vector<std::pair<std::string, torch::Tensor>> params;
};

// Enables or disables a model's adapters for the scope of one block (a reference forward pass).
class LanguageModel;
class AdaptersDisabled {
 public:
  explicit AdaptersDisabled(LanguageModel& model);
  ~AdaptersDisabled();
  AdaptersDisabled(const AdaptersDisabled&) = delete;
  AdaptersDisabled& operator=(const AdaptersDisabled&) = delete;

 private:
  LanguageModel& model_;
};

class LanguageModel : public ChatModel {
 public:
  // Training encoding (vicuna_v1 with labels on the replies).
  virtual EncodedSample encode(const ChatSample& sample) const = 0;
  // Generation prompt: the conversation cut before the last reply, ending "ASSISTANT:".
  virtual EncodedSample encode_prompt(const ChatSample& sample) const = 0;
  // Pads (right for training, left for generation), loads and preprocesses the images, moves to the device.
  virtual ModelBatch collate(const std::vector<EncodedSample>& samples, bool left_pad) const = 0;

  // Logits at every position of the expanded sequence: (B, T', V). For tests and small batches: training
  // paths below never materialise the whole tensor.
  virtual torch::Tensor logits(const ModelBatch& batch) = 0;
  virtual SequenceLogps sequence_logps(const ModelBatch& batch, bool per_token = false) = 0;
  // Token-mean cross-entropy over the labelled positions.
  virtual torch::Tensor lm_loss(const ModelBatch& batch) = 0;
  // Response log-probs of preference pairs whose two rows begin with the same `prompt_tokens` tokens (every image
  // among them; the caller has checked): each pair packed into one row, the prompt computed once, the rejected
  // reply attending to the prompt but not to the chosen one. {chosen, rejected}; nullopt where the model cannot
  // (the caller then computes both rows). With LoRA dropout in training both sides share the prompt's dropout
  // mask: a model refuses that (ConfigError) unless `shared_dropout`.
  struct SharedPromptPair {
    const EncodedSample* chosen;
    const EncodedSample* rejected;
    int64_t prompt_tokens;
  };
  virtual std::optional<std::pair<SequenceLogps, SequenceLogps>> shared_prompt_logps(
      const std::vector<SharedPromptPair>& pairs, bool per_token, bool shared_dropout) {
    (void)pairs, (void)per_token, (void)shared_dropout;
    return std::nullopt;
  }

  // The parameters that train, in named groups the trainer can give their own learning rate: `lora` for adapter
  // weights (saved by save_adapter), and model-specific ones such as `projector`. Tensors are named as PEFT
  // names them (the checkpoint keys).
  virtual std::vector<ParameterGroup> parameter_groups() = 0;
  // Every trainable tensor of every group, in group order.
  std::vector<std::pair<std::string, torch::Tensor>> trainable_parameters() {
    std::vector<std::pair<std::string, torch::Tensor>> out;
    for (auto& group : parameter_groups()) out.insert(out.end(), group.params.begin(), group.params.end());
    return out;
  }
  // Off: the model computes as the base model it was loaded as, without its adapters (LoRA branches and trained
  // copies of extra modules), as PEFT's disable_adapter() does. A frozen reference (DPO) is the policy with its
  // adapters off, so it costs no second copy of the weights.
  virtual void set_adapters_enabled(bool on) = 0;
  virtual void set_training(bool on) = 0;
  // Training memory: keep only each decoder layer's input and recompute the layer in the backward pass.
  virtual void set_activation_checkpointing(bool on) = 0;

  virtual std::vector<Generation> generate(const std::vector<ChatSample>& prompts, const GenerationConfig& config) = 0;

  // PEFT-compatible adapters: adapter_config.json + adapter_model.safetensors.
  virtual void save_adapter(const std::filesystem::path& dir) const = 0;
  virtual void load_adapter(const std::filesystem::path& dir) = 0;

  virtual torch::Device device() const = 0;
  virtual torch::Dtype dtype() const = 0;
};

inline AdaptersDisabled::AdaptersDisabled(LanguageModel& model) : model_(model) { model_.set_adapters_enabled(false); }
inline AdaptersDisabled::~AdaptersDisabled() { model_.set_adapters_enabled(true); }

}  // namespace mmr
