// config.json parsing: llava-hf and original LLaVA layouts, rope variants, and errors naming file and key.
#include <gtest/gtest.h>

#include "config.h"
#include "core/api/error.h"

using mmr::llava::LlavaConfig;

TEST(LlavaConfig, ReadsTheFixtureConfig) {
  const auto c = LlavaConfig::from_file(std::string(MMR_TEST_DATA_DIR) + "/tiny-llava/model/config.json");
  EXPECT_EQ(c.layout, LlavaConfig::Layout::HfLlava);
  EXPECT_EQ(c.text.hidden_size, 64);
  EXPECT_EQ(c.text.num_key_value_heads, 4);
  EXPECT_EQ(c.text.head_dim, 16);
  EXPECT_EQ(c.text.vocab_size, 544);
  EXPECT_DOUBLE_EQ(c.text.rope.theta, 1e4);
  EXPECT_EQ(c.vision.num_patches(), 576);
  EXPECT_EQ(c.image_token_index, 512);
  EXPECT_EQ(c.pad_token_id, 513);
  EXPECT_EQ(c.vision_feature_layer, -2);
}

TEST(LlavaConfig, OriginalLayoutTakesVisionShapeFromTheClipConfig) {
  const std::string llava = R"({"architectures": ["LlavaLlamaForCausalLM"], "hidden_size": 5120, "num_attention_heads": 40,
    "num_hidden_layers": 40, "intermediate_size": 13824, "vocab_size": 32000, "mm_vision_tower": "openai/clip",
    "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 1024, "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch", "image_aspect_ratio": "pad", "rope_scaling": null})";
  const std::string clip = R"({"vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "image_size": 336,
    "patch_size": 14, "num_attention_heads": 16, "intermediate_size": 4096}})";
  const auto c = LlavaConfig::from_text(llava, "llava/config.json", clip, "clip/config.json");
  EXPECT_EQ(c.layout, LlavaConfig::Layout::OriginalLlava);
  EXPECT_EQ(c.text.num_key_value_heads, 40);
  EXPECT_EQ(c.vision.num_hidden_layers, 24);
  EXPECT_EQ(c.vision_tower_name, "openai/clip");
  EXPECT_EQ(c.image_token_index, -200);
}

TEST(LlavaConfig, RopeParametersOfTransformers5AndLlama3Scaling) {
  const std::string text = R"({"model_type": "llava", "text_config": {"hidden_size": 64, "num_attention_heads": 4,
    "num_key_value_heads": 2, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
    "vision_config": {"hidden_size": 48, "num_attention_heads": 4}})";
  const auto c = LlavaConfig::from_text(text, "c.json");
  EXPECT_EQ(c.text.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.text.rope.theta, 5e5);
  EXPECT_EQ(c.text.rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(c.text.num_key_value_heads, 2);
}

TEST(LlavaConfig, ErrorsNameFileKeyAndValue) {
  auto message = [](const std::string& text) {
    try {
      LlavaConfig::from_text(text, "bad/config.json");
    } catch (const mmr::DataError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message(R"({"model_type": "llava", "text_config": {"hidden_size": "big"}, "vision_config": {}})"),
            "bad/config.json: 'text_config.hidden_size': expected an integer, found \"big\"");
  EXPECT_EQ(message(R"({"model_type": "llava", "text_config": {"num_attention_heads": 6, "num_key_value_heads": 4},
    "vision_config": {}})"),
            "bad/config.json: 'text_config.num_attention_heads' (6) must be a positive multiple of num_key_value_heads (4)");
  EXPECT_NE(message("{not json").find("bad/config.json: not valid JSON"), std::string::npos);
  // Found by probing: zero heads divided before any check (SIGFPE), and a nested value crashed the error message.
  EXPECT_EQ(message(R"({"model_type": "llava", "text_config": {"num_attention_heads": 0}, "vision_config": {}})"),
            "bad/config.json: 'text_config.num_attention_heads' must be positive, found 0");
  EXPECT_EQ(message(R"({"model_type": "llava", "text_config": {}, "vision_config": {"num_attention_heads": 0}})"),
            "bad/config.json: 'vision_config.num_attention_heads' must be positive, found 0");
  EXPECT_EQ(message(R"({"model_type": "llava", "text_config": {}, "vision_config": {"num_attention_heads": 7}})"),
            "bad/config.json: 'vision_config.hidden_size' (1024) must be a multiple of num_attention_heads (7)");
  const std::string deep = R"({"model_type": "llava", "text_config": {"hidden_size": )" + std::string(100000, '[') +
                           std::string(100000, ']') + "}}";
  EXPECT_NE(message(deep).find("bad/config.json: not valid JSON: nested deeper than 256 levels"), std::string::npos)
      << message(deep).substr(0, 200);
  EXPECT_NE(message(R"({"model_type": "llava", "text_config": {"rope_scaling": {"type": "su"}}, "vision_config": {}})")
                .find("'text_config.rope_scaling.rope_type': 'su' is not supported"),
            std::string::npos);
}
