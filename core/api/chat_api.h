// The torch-free half of the model interface: conversations in, generated text out. The host (`runner serve`),
// judges and benchmarks generate through ChatModel without including LibTorch; algorithms that train use the
// torch-facing LanguageModel (core/api/model_api.h), which derives from it.
//
// A caller holding a model plugin object gets it with dynamic_cast<ChatModel*>(plugin.get()) (see chat_model()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"

namespace mmr {

// The label and id conventions of an encoded sample (LanguageModel::encode), LLaVA's constants: labels are
// kIgnoreIndex (IGNORE_INDEX) where no loss is taken, and input ids hold one kImagePlaceholderId
// (IMAGE_TOKEN_INDEX) per image, which the model expands into patch features.
constexpr int64_t kIgnoreIndex = -100;
constexpr int64_t kImagePlaceholderId = -200;

// One conversation: alternating human/gpt turns (LLaVA's "from" values), and the image files its <image>
// placeholders refer to, in order.
struct ChatTurn {
  std::string role;  // "human" | "gpt"
  std::string text;
};
struct ChatSample {
  std::vector<ChatTurn> turns;
  std::vector<std::string> images;
};

struct GenerationConfig {
  int64_t max_new_tokens = 128;
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  int64_t top_k = 0;         // 0: off
  uint64_t seed = 0;
  bool stop_at_eos = true;
  std::vector<std::string> stop_strings;
};

struct Generation {
  std::string text;
  std::vector<int64_t> token_ids;
  std::string finish_reason;  // "eos" | "stop_string" | "length"
  int64_t prompt_tokens = 0;  // positions of the prompt the model read (image patches included); 0: not known
};

// Continuous batching, for servers (`runner serve`): requests join a running batch and leave it between decoding
// steps, so a request that arrives while others decode starts at the next step instead of waiting for them.
// One DecodeBatch per model at a time; it is used from one thread.
struct BatchEvent {
  uint64_t id = 0;
  std::string text;       // the reply so far, decoded from all its tokens (EOS left out, stop strings not yet cut)
  bool finished = false;  // the request left the batch; `result` is what generate() would have returned for it
  Generation result;
};

class DecodeBatch {
 public:
  virtual ~DecodeBatch() = default;
  // Reads the prompt now (its prefill) and adds the request, which decodes from the next step() on. A greedy
  // request's reply is the one generate() gives for the prompt alone; a sampled one draws from its own generator
  // seeded by config.seed, as generate() with that prompt alone would; a reply that would pass the model's context
  // ends there (finish_reason "length"). Throws DataError for a prompt the model cannot take, with the batch
  // unchanged.
  virtual void add(uint64_t id, const ChatSample& prompt, const GenerationConfig& config) = 0;
  // Drops a request (its client went away); an id not in the batch is ignored.
  virtual void cancel(uint64_t id) = 0;
  // One new token for every request in the batch: an event for each, `finished` for those that are done (they
  // leave the batch; the first step may finish a request whose max_new_tokens is 1 or whose first token is EOS).
  virtual std::vector<BatchEvent> step() = 0;
  virtual size_t size() const = 0;
};

class ChatModel : public Model {
 public:
  // A batch for continuous batching; nullptr when the model has none (callers then use generate()).
  virtual std::unique_ptr<DecodeBatch> start_batch() { return nullptr; }

  // One reply per prompt. A prompt ends with a human turn (or is cut before its last gpt turn); the model
  // applies its own conversation template.
  virtual std::vector<Generation> generate(const std::vector<ChatSample>& prompts, const GenerationConfig& config) = 0;

  // Prompt conditioning, the hook for methods that condition a model through its prompt (target attribute values,
  // an instruction suffix): at generation the last user turn's text becomes `tmpl` with "{prompt}" replaced by
  // it. "" or "{prompt}" is off. Model plugins take the same as their option `prompt_template`.
  virtual void set_prompt_template(const std::string& tmpl) = 0;

  // How images are made square before the vision tower, for benchmarks whose official scripts differ from the
  // model's training (LLaVA-1.5's model_vqa.py centre-crops where training padded): "pad" (expand to a square with
  // the mean colour), "center_crop" (shortest edge to the input size, then the centre), "resize" (stretch), or ""
  // (the model's own). Returns false when the model has no such choice (text-only models, stand-ins); the caller
  // then says so.
  virtual bool set_image_preprocessing(const std::string& mode) {
    (void)mode;
    return false;
  }
};

// `tmpl` with every "{prompt}" replaced by `prompt` ("" = `prompt` unchanged).
inline std::string apply_prompt_template(const std::string& tmpl, const std::string& prompt) {
  if (tmpl.empty()) return prompt;
  std::string out = tmpl;
  const std::string key = "{prompt}";
  for (size_t pos = out.find(key); pos != std::string::npos; pos = out.find(key, pos + prompt.size()))
    out.replace(pos, key.size(), prompt);
  return out;
}

// The ChatModel behind a model plugin object; throws ConfigError naming `what` when the plugin cannot generate.
inline ChatModel& chat_model(Plugin& plugin, const std::string& what = "model") {
  auto* m = dynamic_cast<ChatModel*>(&plugin);
  if (!m) throw ConfigError(what + ": this model plugin does not implement ChatModel (it cannot generate text)");
  return *m;
}

}  // namespace mmr
