// LLaVA-1.5 hyper-parameters, read from a checkpoint's config.json. Torch-free.
//
// Three layouts users have: llava-hf ("LlavaForConditionalGeneration": text_config + vision_config), original
// LLaVA ("LlavaLlamaForCausalLM": LLaMA fields at the top plus mm_* fields; the CLIP tower is a separate
// checkpoint named by mm_vision_tower, whose own config.json gives the vision shape), and a plain LLaMA / Vicuna
// ("LlamaForCausalLM", model_type "llama"): the text-only baselines, no vision tower and no projector. Rope settings come either
// as rope_theta + rope_scaling (transformers 4) or as rope_parameters (transformers 5).
#pragma once

#include <cstdint>
#include <string>

namespace mmr::llava {

struct RopeConfig {
  std::string type = "default";  // default | linear | dynamic | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;
  double low_freq_factor = 1.0;    // llama3
  double high_freq_factor = 4.0;   // llama3
  int64_t original_max_position_embeddings = 0;  // llama3, yarn, dynamic
  double beta_fast = 32.0, beta_slow = 1.0;      // yarn
  double attention_factor = 0.0;                 // yarn; 0 = derive from factor
};

// The sizes every transformer stack of the model has (the LLaMA decoder and the CLIP tower), read alike.
struct StackShape {
  int64_t hidden_size;
  int64_t intermediate_size;
  int64_t num_hidden_layers;
  int64_t num_attention_heads;
  std::string hidden_act;
};

struct TextConfig : StackShape {
  TextConfig() : StackShape{4096, 11008, 32, 32, "silu"} {}
  int64_t vocab_size = 32000;
  int64_t num_key_value_heads = 32;
  int64_t head_dim = 128;
  int64_t max_position_embeddings = 4096;
  double rms_norm_eps = 1e-5;
  double initializer_range = 0.02;  // std of random_init's normal weights (HF's _init_weights)
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  RopeConfig rope;
};

struct VisionConfig : StackShape {
  VisionConfig() : StackShape{1024, 4096, 24, 16, "quick_gelu"} {}
  int64_t image_size = 336;
  int64_t patch_size = 14;
  int64_t num_channels = 3;
  double layer_norm_eps = 1e-5;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};

struct LlavaConfig {
  enum class Layout { HfLlava, OriginalLlava, TextOnly };
  Layout layout = Layout::HfLlava;
  TextConfig text;
  VisionConfig vision;
  std::string projector_type = "mlp2x_gelu";  // mlp2x_gelu | linear
  std::string projector_act = "gelu";
  bool projector_bias = true;
  int64_t image_token_index = 32000;  // llava-hf's id for <image> (our inputs use the -200 placeholder)
  int64_t pad_token_id = -1;
  int64_t vision_feature_layer = -2;
  std::string vision_feature_select_strategy = "default";  // default (drop CLS) | full
  std::string image_aspect_ratio = "pad";
  std::string vision_tower_name;  // original layout: mm_vision_tower

  bool has_vision() const { return layout != Layout::TextOnly; }

  // Reads <dir>/config.json. For the original layout, the CLIP shape comes from `vision_config_json` when given
  // (the vision tower checkpoint's config.json), else from a vision_config block if present. Errors name the
  // file, the key, expected and found.
  static LlavaConfig from_file(const std::string& config_json, const std::string& vision_config_json = "");
  static LlavaConfig from_text(const std::string& text, const std::string& source,
                               const std::string& vision_text = "", const std::string& vision_source = "");
};

}  // namespace mmr::llava
