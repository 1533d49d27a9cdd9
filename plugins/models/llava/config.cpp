// config.json parsing for LLaVA checkpoints. See config.h.
#include "config.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace mmr::llava {
namespace {

using json = nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open '{}' for reading (expected a checkpoint's config.json)", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse(const std::string& text, const std::string& source) {
  try {
    return parse_json_limited(text);
  } catch (const std::exception& e) {
    throw DataError(fmt::format("{}: not valid JSON: {}", source, e.what()));
  }
}

// Reads obj[key] as T when present; a value of the wrong type is an error naming the file and key.
template <typename T>
void read(const json& obj, const char* key, T& out, const std::string& source, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return;
  try {
    if constexpr (std::is_same_v<T, int64_t>) {
      if (!it->is_number_integer()) throw std::runtime_error("");
    } else if constexpr (std::is_same_v<T, double>) {
      if (!it->is_number()) throw std::runtime_error("");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (!it->is_boolean()) throw std::runtime_error("");
    } else {
      if (!it->is_string()) throw std::runtime_error("");
    }
    out = it->get<T>();
  } catch (const std::exception&) {
    const char* want = std::is_same_v<T, int64_t> ? "an integer" : std::is_same_v<T, double> ? "a number"
                     : std::is_same_v<T, bool> ? "true or false" : "a string";
    throw DataError(fmt::format("{}: '{}{}': expected {}, found {}", source, where, key, want, it->dump()));
  }
}

void read_rope(const json& t, TextConfig& c, const std::string& source, const std::string& where) {
  read(t, "rope_theta", c.rope.theta, source, where);
  const json* scaling = nullptr;
  if (t.contains("rope_parameters") && t["rope_parameters"].is_object()) scaling = &t["rope_parameters"];
  else if (t.contains("rope_scaling") && t["rope_scaling"].is_object()) scaling = &t["rope_scaling"];
  if (!scaling) return;
  const std::string w = where + (t.contains("rope_parameters") ? "rope_parameters." : "rope_scaling.");
  std::string type = "default";
  read(*scaling, "type", type, source, w);
  read(*scaling, "rope_type", type, source, w);
  read(*scaling, "rope_theta", c.rope.theta, source, w);
  read(*scaling, "factor", c.rope.factor, source, w);
  read(*scaling, "low_freq_factor", c.rope.low_freq_factor, source, w);
  read(*scaling, "high_freq_factor", c.rope.high_freq_factor, source, w);
  read(*scaling, "original_max_position_embeddings", c.rope.original_max_position_embeddings, source, w);
  read(*scaling, "beta_fast", c.rope.beta_fast, source, w);
  read(*scaling, "beta_slow", c.rope.beta_slow, source, w);
  read(*scaling, "attention_factor", c.rope.attention_factor, source, w);
  if (type != "default" && type != "linear" && type != "dynamic" && type != "llama3" && type != "yarn")
    throw DataError(fmt::format("{}: '{}rope_type': '{}' is not supported (expected default, linear, dynamic, "
                                "llama3 or yarn)", source, w, type));
  c.rope.type = type;
}

void read_stack_shape(const json& t, StackShape& c, const std::string& source, const std::string& where) {
  read(t, "hidden_size", c.hidden_size, source, where);
  read(t, "intermediate_size", c.intermediate_size, source, where);
  read(t, "num_hidden_layers", c.num_hidden_layers, source, where);
  read(t, "num_attention_heads", c.num_attention_heads, source, where);
  read(t, "hidden_act", c.hidden_act, source, where);
  // Checked before anything divides by them (a 0 here was a SIGFPE at load).
  for (const auto& [key, value] : {std::pair{"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
                                   {"num_hidden_layers", c.num_hidden_layers},
                                   {"num_attention_heads", c.num_attention_heads}})
    if (value <= 0) throw DataError(fmt::format("{}: '{}{}' must be positive, found {}", source, where, key, value));
}

TextConfig read_text_config(const json& t, const std::string& source, const std::string& where) {
  TextConfig c;
  read(t, "vocab_size", c.vocab_size, source, where);
  read_stack_shape(t, c, source, where);
  c.num_key_value_heads = c.num_attention_heads;
  read(t, "num_key_value_heads", c.num_key_value_heads, source, where);
  c.head_dim = c.hidden_size / c.num_attention_heads;
  read(t, "head_dim", c.head_dim, source, where);
  read(t, "max_position_embeddings", c.max_position_embeddings, source, where);
  read(t, "rms_norm_eps", c.rms_norm_eps, source, where);
  read(t, "initializer_range", c.initializer_range, source, where);
  read(t, "tie_word_embeddings", c.tie_word_embeddings, source, where);
  read(t, "attention_bias", c.attention_bias, source, where);
  read(t, "mlp_bias", c.mlp_bias, source, where);
  read_rope(t, c, source, where);
  if (c.hidden_act != "silu")
    throw DataError(fmt::format("{}: '{}hidden_act': '{}' is not supported (LLaMA uses silu)", source, where,
                                c.hidden_act));
  if (c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads)
    throw DataError(fmt::format("{}: '{}num_attention_heads' ({}) must be a positive multiple of "
                                "num_key_value_heads ({})", source, where, c.num_attention_heads,
                                c.num_key_value_heads));
  if (c.head_dim <= 0 || c.head_dim % 2)
    throw DataError(fmt::format("{}: '{}head_dim' must be positive and even for rotary embeddings, found {}", source,
                                where, c.head_dim));
  if (c.vocab_size <= 0 || c.max_position_embeddings <= 0)
    throw DataError(fmt::format("{}: '{}vocab_size' ({}) and 'max_position_embeddings' ({}) must be positive", source,
                                where, c.vocab_size, c.max_position_embeddings));
  return c;
}

VisionConfig read_vision_config(const json& v, const std::string& source, const std::string& where) {
  VisionConfig c;
  read_stack_shape(v, c, source, where);
  read(v, "image_size", c.image_size, source, where);
  read(v, "patch_size", c.patch_size, source, where);
  read(v, "num_channels", c.num_channels, source, where);
  read(v, "layer_norm_eps", c.layer_norm_eps, source, where);
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw DataError(fmt::format("{}: '{}hidden_act': '{}' is not supported (expected quick_gelu or gelu)", source,
                                where, c.hidden_act));
  if (c.hidden_size % c.num_attention_heads)
    throw DataError(fmt::format("{}: '{}hidden_size' ({}) must be a multiple of num_attention_heads ({})", source,
                                where, c.hidden_size, c.num_attention_heads));
  if (c.num_channels <= 0)
    throw DataError(fmt::format("{}: '{}num_channels' must be positive, found {}", source, where, c.num_channels));
  if (c.patch_size <= 0 || c.image_size <= 0 || c.image_size % c.patch_size)
    throw DataError(fmt::format("{}: '{}image_size' ({}) must be a multiple of patch_size ({})", source, where,
                                c.image_size, c.patch_size));
  return c;
}

}  // namespace

LlavaConfig LlavaConfig::from_file(const std::string& config_json, const std::string& vision_config_json) {
  return from_text(read_text(config_json), config_json,
                   vision_config_json.empty() ? "" : read_text(vision_config_json), vision_config_json);
}

LlavaConfig LlavaConfig::from_text(const std::string& text, const std::string& source, const std::string& vision_text,
                                   const std::string& vision_source) {
  const json j = parse(text, source);
  if (!j.is_object()) throw DataError(fmt::format("{}: expected a JSON object", source));
  LlavaConfig c;
  std::string arch;
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty() &&
      j["architectures"][0].is_string())
    arch = j["architectures"][0].get<std::string>();
  std::string model_type;
  read(j, "model_type", model_type, source, "");
  const bool hf = j.contains("text_config") || model_type == "llava" || arch == "LlavaForConditionalGeneration";
  if (hf) {
    c.layout = Layout::HfLlava;
    if (!j.contains("text_config") || !j["text_config"].is_object())
      throw DataError(fmt::format("{}: expected 'text_config' (a llava-hf config)", source));
    if (!j.contains("vision_config") || !j["vision_config"].is_object())
      throw DataError(fmt::format("{}: expected 'vision_config' (a llava-hf config)", source));
    c.text = read_text_config(j["text_config"], source, "text_config.");
    c.vision = read_vision_config(j["vision_config"], source, "vision_config.");
    read(j, "image_token_index", c.image_token_index, source, "");
    read(j, "image_token_id", c.image_token_index, source, "");
    read(j, "pad_token_id", c.pad_token_id, source, "");
    read(j["text_config"], "pad_token_id", c.pad_token_id, source, "text_config.");
    read(j, "vision_feature_layer", c.vision_feature_layer, source, "");
    read(j, "vision_feature_select_strategy", c.vision_feature_select_strategy, source, "");
    read(j, "projector_hidden_act", c.projector_act, source, "");
    read(j, "multimodal_projector_bias", c.projector_bias, source, "");
    if (j.contains("tie_word_embeddings") && j["tie_word_embeddings"].is_boolean())
      c.text.tie_word_embeddings = j["tie_word_embeddings"].get<bool>() && c.text.tie_word_embeddings;
  } else if (!j.contains("mm_vision_tower") && (arch == "LlamaForCausalLM" || model_type == "llama")) {
    c.layout = Layout::TextOnly;
    c.text = read_text_config(j, source, "");
    read(j, "pad_token_id", c.pad_token_id, source, "");
    return c;
  } else {
    if (!j.contains("mm_vision_tower") && arch.find("Llava") == std::string::npos)
      throw DataError(fmt::format("{}: neither a llava-hf config (text_config/vision_config), an original LLaVA "
                                  "config (mm_vision_tower) nor a LLaMA one (LlamaForCausalLM); architectures: '{}'",
                                  source, arch));
    c.layout = Layout::OriginalLlava;
    c.text = read_text_config(j, source, "");
    read(j, "mm_vision_tower", c.vision_tower_name, source, "");
    read(j, "mm_projector_type", c.projector_type, source, "");
    read(j, "mm_vision_select_layer", c.vision_feature_layer, source, "");
    std::string select = "patch";
    read(j, "mm_vision_select_feature", select, source, "");
    if (select != "patch" && select != "cls_patch")
      throw DataError(fmt::format("{}: 'mm_vision_select_feature': expected patch or cls_patch, found '{}'", source,
                                  select));
    c.vision_feature_select_strategy = select == "patch" ? "default" : "full";
    read(j, "image_aspect_ratio", c.image_aspect_ratio, source, "");
    read(j, "pad_token_id", c.pad_token_id, source, "");
    c.image_token_index = -200;
    bool vision_known = true;  // else the CLIP defaults stand in until the tower's own config is read
    if (!vision_text.empty()) {
      const json v = parse(vision_text, vision_source);
      const bool nested = v.contains("vision_config") && v["vision_config"].is_object();
      c.vision = read_vision_config(nested ? v["vision_config"] : v, vision_source, nested ? "vision_config." : "");
    } else if (j.contains("vision_config") && j["vision_config"].is_object()) {
      c.vision = read_vision_config(j["vision_config"], source, "vision_config.");
    } else {
      vision_known = false;
    }
    int64_t mm_hidden = c.vision.hidden_size;
    read(j, "mm_hidden_size", mm_hidden, source, "");
    if (vision_known && mm_hidden != c.vision.hidden_size)
      throw DataError(fmt::format("{}: 'mm_hidden_size' is {} but the vision tower's hidden_size is {} ({})", source,
                                  mm_hidden, c.vision.hidden_size,
                                  vision_source.empty() ? "default CLIP ViT-L/14-336" : vision_source));
  }
  if (c.projector_type != "mlp2x_gelu" && c.projector_type != "linear")
    throw DataError(fmt::format("{}: projector type '{}' is not supported (expected mlp2x_gelu or linear)", source,
                                c.projector_type));
  if (c.projector_act != "gelu")
    throw DataError(fmt::format("{}: 'projector_hidden_act': '{}' is not supported (LLaVA-1.5 uses gelu)", source,
                                c.projector_act));
  if (c.vision_feature_select_strategy != "default" && c.vision_feature_select_strategy != "full")
    throw DataError(fmt::format("{}: 'vision_feature_select_strategy': expected default or full, found '{}'", source,
                                c.vision_feature_select_strategy));
  const int64_t layers = c.vision.num_hidden_layers;
  if (c.vision_feature_layer >= 0 ? c.vision_feature_layer > layers : -c.vision_feature_layer > layers + 1)
    throw DataError(fmt::format("{}: vision feature layer {} is out of range for a {}-layer vision tower", source,
                                c.vision_feature_layer, layers));
  return c;
}

}  // namespace mmr::llava
