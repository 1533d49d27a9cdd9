// The text-only baseline (a plain LlamaForCausalLM checkpoint, as Vicuna is published) against HF transformers +
// PEFT: tests/data/tiny-llama, made by tools/fixtures/make_tiny_llama.py. Every expected value comes from the
// fixture files, never from this code. MMR_TEST_DEVICE=cuda runs the same checks on the GPU with tolerances x10.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "core/api/error.h"
#include "fixture.h"

using namespace llava_fixture;

namespace {

fs::path text_fixture() { return fs::path(MMR_TEST_DATA_DIR) / "tiny-llama"; }

LlavaOptions text_options(bool with_adapter) {
  LlavaOptions o;
  o.path = (text_fixture() / "model").string();
  o.device = device();
  if (with_adapter) o.adapter = (text_fixture() / "adapter").string();
  return o;
}

std::vector<json> conversations() { return read_jsonl(text_fixture() / "expected" / "tokenization.jsonl"); }

// The fixture's keys for the base model ("") and the model with the PEFT adapter ("_adapter").
const char* tag(bool with_adapter) { return with_adapter ? "_adapter" : ""; }

class TextOnly : public ::testing::TestWithParam<bool> {  // parameter: with the PEFT adapter
 protected:
  static void SetUpTestSuite() {
    base_ = new LlavaModel(text_options(false));
    adapted_ = new LlavaModel(text_options(true));
  }
  static void TearDownTestSuite() {
    delete base_;
    delete adapted_;
  }
  static LlavaModel& model() { return GetParam() ? *adapted_ : *base_; }
  static LlavaModel* base_;
  static LlavaModel* adapted_;
};
LlavaModel* TextOnly::base_ = nullptr;
LlavaModel* TextOnly::adapted_ = nullptr;

}  // namespace

TEST(TextOnlyConfig, LlamaForCausalLMIsATextOnlyModel) {
  const auto c = mmr::llava::LlavaConfig::from_file((text_fixture() / "model" / "config.json").string());
  EXPECT_EQ(c.layout, mmr::llava::LlavaConfig::Layout::TextOnly);
  EXPECT_FALSE(c.has_vision());
  EXPECT_EQ(c.text.num_key_value_heads, 2);
  EXPECT_EQ(c.text.head_dim, 16);
}

TEST_P(TextOnly, TokenIdsAndLabelsAreExact) {
  for (const auto& row : conversations()) {
    const mmr::EncodedSample enc = model().encode(sample_of(row));
    EXPECT_EQ(enc.input_ids, row["input_ids"].get<std::vector<int64_t>>()) << row["id"];
    EXPECT_EQ(enc.labels, row["labels"].get<std::vector<int64_t>>()) << row["id"];
  }
}

TEST_P(TextOnly, LogitsAndResponseLogProbsMatch) {
  torch::NoGradGuard no_grad;
  const auto f = st::SafetensorsFile::open((text_fixture() / "expected" / "forward.safetensors").string());
  for (const auto& row : conversations()) {
    const std::string id = row["id"];
    const mmr::ModelBatch batch = model().collate({model().encode(sample_of(row))}, false);
    const torch::Tensor logits = model().logits(batch)[0];
    EXPECT_LE(max_abs_diff(logits, expected(f, std::string("logits") + tag(GetParam()) + "_" + id)), 1e-4 * scale())
        << id;
    const auto lp = model().sequence_logps(batch, false);
    EXPECT_NEAR(lp.sum[0].item<double>(), row[std::string("logp") + tag(GetParam())].get<double>(), 1e-3 * scale())
        << id;
    EXPECT_NEAR(lp.mean[0].item<double>(), row[std::string("avg_logp") + tag(GetParam())].get<double>(),
                1e-4 * scale()) << id;
  }
}

TEST_P(TextOnly, GreedyContinuationsAreExact) {
  std::map<std::string, json> convs;
  for (const auto& row : conversations()) convs[row["id"]] = row;
  int runs = 0;
  for (const auto& row : read_jsonl(text_fixture() / "expected" / "generate.jsonl")) {
    if (row["model"] != (GetParam() ? "adapter" : "base")) continue;
    json conv = convs.at(row["id"].get<std::string>());
    conv["messages"].erase(conv["messages"].size() - 1);  // cut before the last assistant reply
    const mmr::ChatSample s = sample_of(conv);
    EXPECT_EQ(model().encode_prompt(s).input_ids, row["input_ids"].get<std::vector<int64_t>>()) << row["id"];
    mmr::GenerationConfig g;
    g.max_new_tokens = static_cast<int64_t>(row["new_ids"].size());
    g.stop_at_eos = false;
    EXPECT_EQ(model().generate({s}, g)[0].token_ids, row["new_ids"].get<std::vector<int64_t>>()) << row["id"];
    ++runs;
  }
  EXPECT_EQ(runs, 3);
}

INSTANTIATE_TEST_SUITE_P(BaseAndPeftAdapter, TextOnly, ::testing::Bool());

TEST(TextOnlyErrors, AnImageOrAProjectorIsAClearError) {
  LlavaModel m(text_options(false));
  mmr::ChatSample s{{{"human", "<image>\nWhat is this?"}}, {(fs::path(MMR_TEST_DATA_DIR) / "tiny-llava" / "images" / "wide.png").string()}};
  try {
    m.collate({m.encode(s)}, false);
    FAIL() << "an image reached a text-only model";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("text-only"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(m.set_image_preprocessing("pad"));
  LlavaOptions o = text_options(false);
  o.train_projector = true;
  EXPECT_THROW(LlavaModel{o}, mmr::ConfigError);
}

TEST(TextOnlyAdapter, SavedAdapterHasPeftsNamesForLlamaForCausalLM) {
  LlavaModel m(text_options(true));
  const fs::path dir = fs::temp_directory_path() / ("mmr-text-adapter-" + std::to_string(::getpid()));
  m.save_adapter(dir);
  const auto ours = st::SafetensorsFile::open((dir / "adapter_model.safetensors").string());
  const auto peft = st::SafetensorsFile::open((text_fixture() / "adapter" / "adapter_model.safetensors").string());
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(ours.names()), sorted(peft.names()));
  for (const auto& name : peft.names()) EXPECT_EQ(max_abs_diff(expected(ours, name), expected(peft, name)), 0.0) << name;
  fs::remove_all(dir);
}
