// Tests for core/safetensors: reading the tiny-llava fixture (written by Python's safetensors), byte-exact
// writing, sharded checkpoints, the 16-bit float conversions and the errors for corrupt files.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/api/error.h"
#include "core/lib/safetensors/half.h"
#include "core/lib/safetensors/safetensors.h"

namespace fs = std::filesystem;
using namespace mmr::safetensors;

namespace {

const std::string kTiny = std::string(MMR_TEST_DATA_DIR) + "/tiny-llava";
const std::string kModel = kTiny + "/model/model.safetensors";
const std::string kAdapter = kTiny + "/adapter/adapter_model.safetensors";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// A fresh folder per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("mmr_st_" + std::string(test->test_suite_name()) + "_" + test->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A hand-made file: header length (default: the header's size), header text, data bytes.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes, uint64_t header_len = UINT64_MAX) {
  if (header_len == UINT64_MAX) header_len = header.size();
  std::vector<uint8_t> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(header_len >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

// Expects `fn` to throw E with every fragment in its message.
template <typename E, typename Fn>
void expect_error(Fn fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception";
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "missing '" << f << "' in: " << msg;
  }
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Reading the fixture

TEST(SafetensorsFile, ReadsTinyLlavaModelWithShapesImpliedByConfig) {
  const nlohmann::json cfg = read_json(kTiny + "/model/config.json");
  const auto& text = cfg["text_config"];
  const auto& vision = cfg["vision_config"];
  const int64_t vocab = text["vocab_size"], hidden = text["hidden_size"], inter = text["intermediate_size"];
  const int64_t heads = text["num_attention_heads"], kv_heads = text["num_key_value_heads"];
  const int64_t text_layers = text["num_hidden_layers"];
  const int64_t vhidden = vision["hidden_size"], vinter = vision["intermediate_size"];
  const int64_t vlayers = vision["num_hidden_layers"], image = vision["image_size"], patch = vision["patch_size"];
  const int64_t head_dim = hidden / heads;
  const int64_t positions = (image / patch) * (image / patch) + 1;   // 576 patches + CLS

  auto f = SafetensorsFile::open(kModel);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  // 2 embeddings/head + norm, 9 per LM layer, 3 vision embeddings, 16 per vision layer, 4 layer norms, 4 projector.
  EXPECT_EQ(f.size(), static_cast<size_t>(3 + 9 * text_layers + 3 + 16 * vlayers + 4 + 4));

  f.expect_shape("language_model.model.embed_tokens.weight", {vocab, hidden});
  f.expect_shape("language_model.lm_head.weight", {vocab, hidden});
  f.expect_shape("language_model.model.norm.weight", {hidden});
  for (int64_t l = 0; l < text_layers; ++l) {
    const std::string p = "language_model.model.layers." + std::to_string(l) + ".";
    f.expect_shape(p + "self_attn.q_proj.weight", {heads * head_dim, hidden});
    f.expect_shape(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden});
    f.expect_shape(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden});
    f.expect_shape(p + "self_attn.o_proj.weight", {hidden, heads * head_dim});
    f.expect_shape(p + "mlp.gate_proj.weight", {inter, hidden});
    f.expect_shape(p + "mlp.up_proj.weight", {inter, hidden});
    f.expect_shape(p + "mlp.down_proj.weight", {hidden, inter});
    f.expect_shape(p + "input_layernorm.weight", {hidden});
    f.expect_shape(p + "post_attention_layernorm.weight", {hidden});
  }
  // transformers 5 saves the CLIP tower without the ".vision_model" level the hub's llava-hf checkpoints have.
  f.expect_shape("vision_tower.embeddings.patch_embedding.weight", {vhidden, 3, patch, patch});
  f.expect_shape("vision_tower.embeddings.position_embedding.weight", {positions, vhidden});
  f.expect_shape("vision_tower.embeddings.class_embedding", {vhidden});
  for (int64_t l = 0; l < vlayers; ++l) {
    const std::string p = "vision_tower.encoder.layers." + std::to_string(l) + ".";
    f.expect_shape(p + "self_attn.q_proj.weight", {vhidden, vhidden});
    f.expect_shape(p + "self_attn.out_proj.bias", {vhidden});
    f.expect_shape(p + "mlp.fc1.weight", {vinter, vhidden});
    f.expect_shape(p + "mlp.fc2.weight", {vhidden, vinter});
  }
  f.expect_shape("multi_modal_projector.linear_1.weight", {hidden, vhidden});
  f.expect_shape("multi_modal_projector.linear_2.weight", {hidden, hidden});

  const TensorInfo& emb = f.info("language_model.model.embed_tokens.weight");
  EXPECT_EQ(emb.dtype, Dtype::F32);
  EXPECT_EQ(emb.nbytes(), static_cast<size_t>(vocab * hidden * 4));

  // Values as Python's struct.unpack('<f') reads them from the same file.
  const std::vector<float> norm = f.to_float32("language_model.model.norm.weight");
  ASSERT_EQ(norm.size(), static_cast<size_t>(hidden));
  EXPECT_EQ(norm[0], 1.0980768203735352f);
  EXPECT_EQ(norm[1], 0.9020811915397644f);
  EXPECT_EQ(norm[2], 0.9351081848144531f);
  EXPECT_EQ(norm[3], 1.0738252401351929f);
}

TEST(SafetensorsFile, ReadsPeftAdapter) {
  auto f = SafetensorsFile::open(kAdapter);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.size(), 28u);   // 2 layers x 7 target modules x (A, B)
  const std::string p = "base_model.model.language_model.model.layers.0.";
  f.expect_shape(p + "self_attn.q_proj.lora_A.weight", {8, 64});
  f.expect_shape(p + "self_attn.q_proj.lora_B.weight", {64, 8});
  f.expect_shape(p + "mlp.down_proj.lora_A.weight", {8, 172});
  f.expect_shape(p + "mlp.down_proj.lora_B.weight", {64, 8});
  f.expect_shape(p + "mlp.gate_proj.lora_B.weight", {172, 8});
  for (const auto& name : f.names()) EXPECT_EQ(f.info(name).dtype, Dtype::F32) << name;
}

TEST(SafetensorsFile, ReadsHandWrittenHeaderWithSpacesAndInt64) {
  // forward.safetensors was written by a script with json.dumps (spaces after ':' and ','), not by save_file.
  auto f = SafetensorsFile::open(kTiny + "/expected/forward.safetensors");
  bool saw_positions = false;
  for (const auto& name : f.names()) {
    if (name.rfind("positions_", 0) != 0) continue;
    saw_positions = true;
    EXPECT_EQ(f.info(name).dtype, Dtype::I64);
    const std::vector<int64_t> pos = f.to_int64(name);
    ASSERT_FALSE(pos.empty());
    for (size_t i = 1; i < pos.size(); ++i) EXPECT_LT(pos[i - 1], pos[i]) << name;
    expect_error<mmr::DataError>([&] { f.to_float32(name); }, {f.path(), name, "I64", "F32"});
  }
  EXPECT_TRUE(saw_positions);
}

TEST(SafetensorsFile, MissingTensorNamesFileAndClosestName) {
  auto f = SafetensorsFile::open(kModel);
  expect_error<mmr::DataError>([&] { f.info("language_model.model.embed_tokens.weights"); },
                               {kModel, "no tensor 'language_model.model.embed_tokens.weights'",
                                "closest name: 'language_model.model.embed_tokens.weight'"});
}

TEST(SafetensorsFile, ExpectShapeSaysExpectedAndFound) {
  auto f = SafetensorsFile::open(kModel);
  expect_error<mmr::DataError>([&] { f.expect_shape("multi_modal_projector.linear_1.weight", {64, 32}); },
                               {kModel + ": tensor 'multi_modal_projector.linear_1.weight': expected shape [64, 32], "
                                         "found [64, 48]"});
}

TEST(SafetensorsFile, MissingFileIsIoErrorNamingPath) {
  expect_error<mmr::IoError>([] { SafetensorsFile::open("/nonexistent/model.safetensors"); },
                             {"/nonexistent/model.safetensors", "No such file"});
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

namespace {
Writer copy_of(const SafetensorsFile& f) {
  Writer w;
  for (const auto& name : f.names()) {
    TensorView v = f.view(name);
    w.add_borrowed(name, v.info->dtype, v.info->shape, v.data, v.info->nbytes());
  }
  w.set_metadata(f.metadata());
  return w;
}
}  // namespace

TEST(SafetensorsWriter, ReproducesPythonSaveFileByteForByte) {
  // These three fixtures were written by Python's safetensors (save_file / save_model): the same tensors and
  // metadata must give the same bytes, header ordering and padding included.
  for (const std::string& path : {kModel, kAdapter, kTiny + "/expected/pixel_values.safetensors"}) {
    auto f = SafetensorsFile::open(path);
    const std::vector<uint8_t> ours = copy_of(f).serialize();
    const std::vector<uint8_t> theirs = read_bytes(path);
    ASSERT_EQ(ours.size(), theirs.size()) << path;
    EXPECT_TRUE(ours == theirs) << path;
  }
}

TEST(SafetensorsWriter, MatchesReferenceImplementationTestVectors) {
  // Byte strings from huggingface/safetensors' own tests (safetensors/src/tensor.rs: test_serialization,
  // test_empty, test_serialization_forced_alignement).
  const std::vector<float> values = {0, 1, 2, 3, 4, 5};
  {
    Writer w;
    w.add_float("attn.0", {1, 2, 3}, values);
    const std::vector<uint8_t> expected = {
        64,  0,   0,  0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,  123, 34,  100,
        116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,
        49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,
        58,  91,  48,  44,  50,  52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,
        0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
    EXPECT_EQ(w.serialize(), expected);
  }
  {
    Writer w;
    w.add_float("attn0", {1, 1, 2, 3}, values);
    const std::vector<uint8_t> expected = {
        72,  0,   0,   0,   0,   0,   0,  0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123, 34,  100, 116,
        121, 112, 101, 34,  58,  34,  70, 51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,  49,
        44,  49,  44,  50,  44,  51,  93, 44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
        34,  58,  91,  48,  44,  50,  52, 93,  125, 125, 32,  32,  32,  32,  32,  32,  32,  0,   0,   0,   0,
        0,   0,   128, 63,  0,   0,   0,  64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
    EXPECT_EQ(w.serialize(), expected);
  }
  {
    Writer w;
    EXPECT_EQ(w.serialize(), (std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
    w.set_metadata({{"framework", "pt"}});
    const std::vector<uint8_t> expected = {40,  0,   0,   0,   0,   0,   0,   0,  123, 34,  95,  95,  109, 101,
                                           116, 97,  100, 97,  116, 97,  95,  95, 34,  58,  123, 34,  102, 114,
                                           97,  109, 101, 119, 111, 114, 107, 34, 58,  34,  112, 116, 34,  125,
                                           125, 32,  32,  32,  32,  32};
    EXPECT_EQ(w.serialize(), expected);
  }
}

TEST(SafetensorsWriter, OrdersTensorsByDtypeThenNameAsPythonDoes) {
  Writer w;
  const uint8_t zeros[8] = {};
  w.add("b_u8", Dtype::U8, {1}, zeros, 1);
  w.add("a_bf16", Dtype::BF16, {1}, zeros, 2);
  w.add("z_f32", Dtype::F32, {1}, zeros, 4);
  w.add("a_f32", Dtype::F32, {1}, zeros, 4);
  w.add("c_i64", Dtype::I64, {1}, zeros, 8);
  w.add("d_f16", Dtype::F16, {1}, zeros, 2);
  w.add("e_bool", Dtype::BOOL, {1}, zeros, 1);
  w.add("f_f64", Dtype::F64, {1}, zeros, 8);
  TempDir dir;
  w.write(dir.file("x.safetensors"));
  auto f = SafetensorsFile::open(dir.file("x.safetensors"));
  EXPECT_EQ(f.names(), (std::vector<std::string>{"c_i64", "f_f64", "a_f32", "z_f32", "a_bf16", "d_f16", "b_u8",
                                                 "e_bool"}));
}

TEST(SafetensorsWriter, RoundTripsF32Bf16F16ExactlyAndKeepsMetadata) {
  // Values chosen to be exactly representable in the stored dtype, so they must come back bit for bit.
  const std::vector<float> f32 = {0.1f, -3.14159274f, 1e-38f, 3.4e38f, -0.0f, 1.17549435e-38f / 8};
  const std::vector<float> bf16 = {1.0f, -2.5f, 0.15625f, 3.3895314e38f, -0.0f, 9.18354962e-41f};   // max, subnormal
  const std::vector<float> f16 = {1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, -0.0f};   // max, min norm/sub
  const std::vector<int64_t> i64 = {-1, 0, std::numeric_limits<int64_t>::max()};
  Writer w;
  w.add_float("w.f32", {2, 3}, f32);
  w.add_float("w.bf16", {3, 2}, bf16, Dtype::BF16);
  w.add_float("w.f16", {6}, f16, Dtype::F16);
  w.add_int64("ids", {3}, i64);
  w.set_metadata({{"format", "pt"}, {"note", "ünïcode \"quoted\"\n"}});
  TempDir dir;
  const std::string path = dir.file("round.safetensors");
  w.write(path);

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcode \"quoted\"\n"}}));
  EXPECT_EQ(f.info("w.bf16").dtype, Dtype::BF16);
  EXPECT_EQ(f.info("w.f16").dtype, Dtype::F16);
  f.expect_shape("w.bf16", {3, 2});
  auto same_bits = [](const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return false;
    return std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same_bits(f.to_float32("w.f32"), f32));
  EXPECT_TRUE(same_bits(f.to_float32("w.bf16"), bf16));
  EXPECT_TRUE(same_bits(f.to_float32("w.f16"), f16));
  EXPECT_EQ(f.to_int64("ids"), i64);
  // The header is padded so that the data region starts 8-aligned.
  EXPECT_EQ((f.info("ids").data_begin) % 8, 0u);
}

TEST(SafetensorsWriter, ReplacesAtomicallyAndLeavesNoTempFile) {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  write_bytes(path, {1, 2, 3});   // an old (bad) file in the way
  Writer w;
  w.add_float("x", {2}, {1.0f, 2.0f});
  w.write(path);
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(dir.path())) entries.push_back(e.path().filename().string());
  EXPECT_EQ(entries, std::vector<std::string>{"a.safetensors"});
  EXPECT_EQ(SafetensorsFile::open(path).to_float32("x"), (std::vector<float>{1.0f, 2.0f}));
}

TEST(SafetensorsWriter, UnwritableFolderIsIoErrorNamingPath) {
  Writer w;
  w.add_float("x", {1}, {1.0f});
  expect_error<mmr::IoError>([&] { w.write("/nonexistent-folder/out.safetensors"); },
                             {"/nonexistent-folder/out.safetensors", "No such file"});
}

TEST(SafetensorsWriter, RejectsWrongByteCountAndDuplicates) {
  Writer w;
  const float v[4] = {};
  expect_error<mmr::DataError>([&] { w.add("x", Dtype::F32, {2, 2}, v, 12); }, {"'x'", "need 16 bytes", "found 12"});
  w.add("x", Dtype::F32, {2, 2}, v, 16);
  expect_error<mmr::DataError>([&] { w.add("x", Dtype::F32, {2, 2}, v, 16); }, {"'x'", "added twice"});
}

// ---------------------------------------------------------------------------------------------------------------
// Sharded checkpoints

namespace {
// Splits the fixture model into two shards plus an index, as transformers' save_pretrained(max_shard_size=...) does.
void write_sharded(const std::string& folder, std::map<std::string, std::string>* weight_map) {
  auto f = SafetensorsFile::open(kModel);
  Writer shard[2];
  const std::string shard_name[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  size_t total = 0, i = 0;
  for (const auto& name : f.names()) {
    TensorView v = f.view(name);
    const int s = (i++ < f.size() / 2) ? 0 : 1;
    shard[s].add(name, v.info->dtype, v.info->shape, v.data, v.info->nbytes());
    (*weight_map)[name] = shard_name[s];
    total += v.info->nbytes();
  }
  for (int s = 0; s < 2; ++s) {
    shard[s].set_metadata({{"format", "pt"}});
    shard[s].write(folder + "/" + shard_name[s]);
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", *weight_map}};
  std::ofstream(folder + "/model.safetensors.index.json") << index.dump(2);
}
}  // namespace

TEST(SafetensorsCheckpoint, ResolvesEveryTensorAcrossTwoShards) {
  TempDir dir;
  std::map<std::string, std::string> weight_map;
  write_sharded(dir.path().string(), &weight_map);
  auto ckpt = Checkpoint::open(dir.path().string());   // the folder: finds the index
  auto whole = SafetensorsFile::open(kModel);
  EXPECT_EQ(ckpt.path(), dir.file("model.safetensors.index.json"));
  EXPECT_EQ(ckpt.shards().size(), 2u);
  EXPECT_EQ(ckpt.size(), whole.size());
  EXPECT_EQ(ckpt.metadata().at("total_size"), "1156416");
  for (const auto& name : whole.names()) {
    ASSERT_TRUE(ckpt.contains(name)) << name;
    EXPECT_EQ(ckpt.file_of(name).path(), dir.file(weight_map.at(name))) << name;
    EXPECT_EQ(ckpt.info(name).shape, whole.info(name).shape) << name;
    EXPECT_EQ(ckpt.to_float32(name), whole.to_float32(name)) << name;
  }
  ckpt.expect_shape("language_model.model.embed_tokens.weight", {544, 64});
}

TEST(SafetensorsCheckpoint, OpensSingleFileFromFolderOrPath) {
  auto by_folder = Checkpoint::open(kTiny + "/model");
  auto by_file = Checkpoint::open(kModel);
  EXPECT_EQ(by_folder.path(), kTiny + "/model/model.safetensors");
  EXPECT_EQ(by_folder.names(), by_file.names());
  EXPECT_EQ(by_file.metadata().at("format"), "pt");
  expect_error<mmr::DataError>([&] { by_file.view("vision_tower.vision_model.embeddings.class_embedding"); },
                               {kModel, "'vision_tower.vision_model.embeddings.class_embedding'"});
}

TEST(SafetensorsCheckpoint, MissingShardNamesIndexShardAndTensor) {
  TempDir dir;
  std::map<std::string, std::string> weight_map;
  write_sharded(dir.path().string(), &weight_map);
  fs::remove(dir.file("model-00002-of-00002.safetensors"));
  const std::string index = dir.file("model.safetensors.index.json");
  expect_error<mmr::DataError>([&] { Checkpoint::open(index); },
                               {index, "names shard 'model-00002-of-00002.safetensors'", "does not exist"});
}

TEST(SafetensorsCheckpoint, TensorMissingFromItsShardNamesIndexShardAndTensor) {
  TempDir dir;
  std::map<std::string, std::string> weight_map;
  write_sharded(dir.path().string(), &weight_map);
  weight_map["language_model.model.extra.weight"] = "model-00001-of-00002.safetensors";
  std::ofstream(dir.file("model.safetensors.index.json")) << nlohmann::json({{"weight_map", weight_map}}).dump();
  expect_error<mmr::DataError>([&] { Checkpoint::open(dir.path().string()); },
                               {dir.file("model.safetensors.index.json"), "'language_model.model.extra.weight'",
                                "model-00001-of-00002.safetensors", "has no such tensor"});
}

// Found by probing: a shard named "../../etc/passwd" was opened.
TEST(SafetensorsCheckpoint, ShardsOutsideTheCheckpointFolderAreRefused) {
  TempDir dir;
  std::map<std::string, std::string> weight_map;
  write_sharded(dir.path().string(), &weight_map);
  for (const std::string shard : {"../../etc/passwd", "/etc/passwd", ".."}) {
    weight_map.begin()->second = shard;
    std::ofstream(dir.file("model.safetensors.index.json")) << nlohmann::json({{"weight_map", weight_map}}).dump();
    expect_error<mmr::DataError>([&] { Checkpoint::open(dir.path().string()); },
                                 {dir.file("model.safetensors.index.json"), "'" + shard + "'",
                                  "is not a file name in the checkpoint folder"});
  }
}

TEST(SafetensorsCheckpoint, IndexWithoutWeightMapIsDataError) {
  TempDir dir;
  std::ofstream(dir.file("model.safetensors.index.json")) << R"({"metadata": {}})";
  expect_error<mmr::DataError>([&] { Checkpoint::open(dir.path().string()); },
                               {dir.file("model.safetensors.index.json"), "weight_map"});
}

// ---------------------------------------------------------------------------------------------------------------
// Corrupt files: each gives an error naming the file (and the tensor where one is at fault).

class SafetensorsCorrupt : public ::testing::Test {
 protected:
  std::string write(const std::vector<uint8_t>& bytes) {
    const std::string path = dir_.file("bad.safetensors");
    write_bytes(path, bytes);
    return path;
  }
  void expect(const std::vector<uint8_t>& bytes, std::vector<std::string> fragments) {
    const std::string path = write(bytes);
    fragments.push_back(path + ": ");
    expect_error<mmr::DataError>([&] { SafetensorsFile::open(path); }, fragments);
  }
  TempDir dir_;
};

TEST_F(SafetensorsCorrupt, FileShorterThanLength) { expect({1, 2, 3}, {"too short", "truncated"}); }

TEST_F(SafetensorsCorrupt, TruncatedHeader) {
  std::vector<uint8_t> bytes = read_bytes(kModel);
  bytes.resize(8 + 100);   // the length says 9064 header bytes follow
  expect(bytes, {"header length 9064 is beyond the file size", "108-byte file"});
}

TEST_F(SafetensorsCorrupt, HeaderLengthTooBig) {
  expect(make_file("{}", 0, uint64_t{1} << 40), {"header length 1099511627776 exceeds", "limit"});
}

TEST_F(SafetensorsCorrupt, BadJson) {
  expect(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4), {"not valid JSON"});
}

// Found by probing: a shape nested 100,000 deep crashed the error message that quoted it (recursive dump()).
TEST_F(SafetensorsCorrupt, DeeplyNestedHeaderIsRefusedWhileParsing) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect(make_file(R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})", 4),
         {"not valid JSON", "nested deeper than 256 levels"});
}

TEST_F(SafetensorsCorrupt, UnknownDtype) {
  expect(make_file(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4),
         {"tensor 'w'", "unknown dtype 'F17'", "BF16"});
}

TEST_F(SafetensorsCorrupt, OverlappingOffsets) {
  expect(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                   R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                   24),
         {"tensor 'b'", "data_offsets [8, 24] overlap tensor 'a'"});
}

TEST_F(SafetensorsCorrupt, GapBetweenTensors) {
  expect(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   12),
         {"tensor 'b'", "gap", "start at 4"});
}

TEST_F(SafetensorsCorrupt, WrongByteCount) {
  expect(make_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12),
         {"tensor 'w'", "dtype F32 and shape [2, 2] need 16 bytes", "span 12 bytes"});
}

TEST_F(SafetensorsCorrupt, OffsetsBeyondData) {
  expect(make_file(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
         {"tensor 'w'", "out of bounds", "8 bytes"});
}

TEST_F(SafetensorsCorrupt, TruncatedData) {
  std::vector<uint8_t> bytes = read_bytes(kModel);
  bytes.resize(bytes.size() - 100);
  // The last tensor in the file is the one cut short.
  expect(bytes, {"tensor 'vision_tower.pre_layrnorm.weight'", "out of bounds", "truncated"});
}

TEST_F(SafetensorsCorrupt, DataRegionNotFullyCovered) {
  expect(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12), {"cover 4 bytes of the 12-byte",
                                                                                      "fully covered"});
}

TEST_F(SafetensorsCorrupt, MetadataMustBeStrings) {
  expect(make_file(R"({"__metadata__":{"epoch":3}})", 0), {"'__metadata__' key 'epoch'", "string"});
}

TEST_F(SafetensorsCorrupt, NegativeShape) {
  expect(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), {"tensor 'w'", "shape [-1]"});
}

// ---------------------------------------------------------------------------------------------------------------
// 16-bit floats, on hand-picked bit patterns

TEST(SafetensorsHalf, Bf16BitPatternsWidenExactly) {
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc020), -2.5f);
  EXPECT_EQ(bf16_to_float(0x0001), std::ldexp(1.0f, -133));   // smallest subnormal
  EXPECT_EQ(bf16_to_float(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(bf16_to_float(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));
  EXPECT_TRUE(std::signbit(bf16_to_float(0x8000)));
}

TEST(SafetensorsHalf, Bf16NarrowsRoundToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(-2.5f), 0xc020);
  EXPECT_EQ(float_to_bf16(std::ldexp(1.0f, -133)), 0x0001);
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808000)), 0x3f80);   // tie, even stays
  EXPECT_EQ(float_to_bf16(bits_float(0x3f818000)), 0x3f82);   // tie, odd rounds up
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808001)), 0x3f81);   // above the tie
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);   // rounds up to inf, as torch
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(bits_float(0x7f800001)))));   // payload only in low bits
}

TEST(SafetensorsHalf, F16BitPatternsWidenExactly) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc100), -2.5f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(f16_to_float(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(f16_to_float(0x0400), std::ldexp(1.0f, -14));   // smallest normal
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::signbit(f16_to_float(0x8000)));
}

TEST(SafetensorsHalf, F16NarrowsRoundToNearestEven) {
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16(-2.5f), 0xc100);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);          // tie between 0 and 2^-24: even (0)
  EXPECT_EQ(float_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -25)), 0x0002);          // 1.5 x 2^-24: tie, odd rounds up
  EXPECT_EQ(float_to_f16(std::ldexp(1023.5f, -24)), 0x0400);       // largest subnormal + half: carries to normal
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);                       // rounds to inf
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);   // tie, even stays
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);   // tie, odd rounds up
  EXPECT_EQ(float_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(float_to_f16(1e-10f), 0x0000);
  EXPECT_EQ(float_to_f16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isnan(f16_to_float(float_to_f16(bits_float(0x7f800001)))));
  // Every finite half survives a round trip through float.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(float_to_f16(f16_to_float(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}
