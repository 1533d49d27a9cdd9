// The `llava` model plugin. See llava.h. Shape letters as in modules.h.
#include "llava.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/lib/safetensors/safetensors.h"
#include "core/lib/tokenizer/llava_text.h"

namespace fs = std::filesystem;
namespace st = mmr::safetensors;

namespace mmr::llava {
namespace {

constexpr int64_t kIgnore = -100;
constexpr int64_t kPlaceholder = -200;

std::shared_ptr<spdlog::logger> log() {
  auto l = spdlog::get("llava");
  return l ? l : spdlog::default_logger();
}

torch::Dtype parse_dtype(const std::string& s) {
  if (s == "float32" || s == "fp32") return torch::kFloat32;
  if (s == "bfloat16" || s == "bf16") return torch::kBFloat16;
  if (s == "float16" || s == "fp16") return torch::kFloat16;
  throw ConfigError(fmt::format("llava: dtype '{}': expected float32, bfloat16 or float16", s));
}

torch::ScalarType torch_type(st::Dtype d, const std::string& file, const std::string& name) {
  switch (d) {
    case st::Dtype::F32: return torch::kFloat32;
    case st::Dtype::F16: return torch::kFloat16;
    case st::Dtype::BF16: return torch::kBFloat16;
    default:
      throw DataError(fmt::format("{}: tensor '{}': dtype {} is not a floating-point weight type (expected F32, F16 or "
                                  "BF16)", file, name, st::dtype_name(d)));
  }
}

// A checkpoint tensor as a torch tensor on the CPU (a copy; the mapping stays read-only).
torch::Tensor read_tensor(const st::Checkpoint& ckpt, const std::string& name) {
  const st::TensorView v = ckpt.view(name);
  const auto type = torch_type(v.info->dtype, *v.file, name);
  return torch::from_blob(const_cast<uint8_t*>(v.data), v.info->shape, torch::TensorOptions().dtype(type)).clone();
}

// HF checkpoint names for one of our parameter names ("vision_tower.layers.0.q_proj.weight", ...).
std::vector<std::string> hf_candidates(const std::string& ours, LlavaConfig::Layout layout) {
  auto starts = [&](const std::string& p) { return ours.rfind(p, 0) == 0; };
  std::vector<std::string> out;
  if (starts("language_model.")) {
    std::string p = ours.substr(15);
    if (p == "lm_head") return {"language_model.lm_head.weight", "lm_head.weight", "model.lm_head.weight"};
    // Our layers hold their linears directly; HF groups them under self_attn / mlp.
    static const std::regex lin_re(R"(layers\.(\d+)\.((q|k|v|o)_proj|(gate|up|down)_proj)\.(.*))");
    std::smatch m;
    if (std::regex_match(p, m, lin_re))
      p = "layers." + m[1].str() + (m[3].matched ? ".self_attn." : ".mlp.") + m[2].str() + "." + m[5].str();
    for (const char* pre : {"language_model.model.", "model.language_model.", "model.", "language_model."})
      out.push_back(pre + p);
  } else if (starts("vision_tower.")) {
    std::string p = ours.substr(13);
    static const std::regex layer_re(R"(layers\.(\d+)\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2|layer_norm1|layer_norm2)\.(.*))");
    std::smatch m;
    if (std::regex_match(p, m, layer_re)) {
      const std::string sub = m[2];
      const std::string group = sub == "fc1" || sub == "fc2" ? "mlp." : (sub.rfind("layer_norm", 0) == 0 ? "" : "self_attn.");
      p = "encoder.layers." + m[1].str() + "." + group + sub + "." + m[3].str();
    } else if (p == "class_embedding" || starts("vision_tower.patch_embedding") || starts("vision_tower.position_embedding")) {
      p = "embeddings." + p;
    }
    for (const char* pre : {"vision_tower.vision_model.", "vision_tower.", "model.vision_tower.vision_model.",
                            "model.vision_tower.", "vision_model.", "model.vision_tower.vision_tower.vision_model."})
      out.push_back(pre + p);
  } else if (starts("multi_modal_projector.")) {
    const std::string p = ours.substr(22);
    out = {"multi_modal_projector." + p, "model.multi_modal_projector." + p};
    if (layout == LlavaConfig::Layout::OriginalLlava) {
      std::string q = p;
      if (q.rfind("linear_1.", 0) == 0) q = "0." + q.substr(9);
      if (q.rfind("linear_2.", 0) == 0) q = "2." + q.substr(9);
      out.push_back("model.mm_projector." + q);
      out.push_back("model.mm_projector." + p.substr(p.find('.') + 1));  // linear projector: no index
    }
  }
  return out;
}

// Sizes of the published LLaVA-1.5 models, for random-init benchmarks without a checkpoint.
LlavaConfig preset(const std::string& shape) {
  LlavaConfig c;
  c.vision = VisionConfig{};  // CLIP ViT-L/14-336
  c.text.vocab_size = 32064;  // llava-hf pads 32000 + <image> + <pad> to a multiple of 64
  c.image_token_index = 32000;
  c.pad_token_id = 32001;
  if (shape == "llava-1.5-7b") {
    c.text.hidden_size = 4096, c.text.intermediate_size = 11008, c.text.num_hidden_layers = 32;
    c.text.num_attention_heads = c.text.num_key_value_heads = 32;
  } else if (shape == "llava-1.5-13b") {
    c.text.hidden_size = 5120, c.text.intermediate_size = 13824, c.text.num_hidden_layers = 40;
    c.text.num_attention_heads = c.text.num_key_value_heads = 40;
  } else {
    throw ConfigError(fmt::format("llava: shape '{}': expected llava-1.5-7b or llava-1.5-13b (or give a checkpoint "
                                  "path with a config.json)", shape));
  }
  c.text.head_dim = c.text.hidden_size / c.text.num_attention_heads;
  return c;
}

std::vector<Turn> to_turns(const ChatSample& s) {
  std::vector<Turn> turns;
  for (const auto& t : s.turns) turns.push_back({t.role, t.text});
  return turns;
}

int64_t count_placeholders(const std::vector<int64_t>& ids) {
  return std::count(ids.begin(), ids.end(), kPlaceholder);
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(fmt::format("cannot open '{}' for writing", tmp.string()));
    out << text;
    out.flush();
    if (!out) throw IoError(fmt::format("write to '{}' failed (disk full?)", tmp.string()));
  }
  fs::rename(tmp, path);
}

}  // namespace

// ---- construction and loading ----

const char* LlavaModel::summary() {
  return "LLaVA-1.5 (CLIP ViT + projector + LLaMA) in LibTorch: llava-hf and original checkpoints, LoRA/PEFT "
         "adapters, KV-cache generation, response log-probs";
}

OptionSchema LlavaModel::option_schema() {
  return {
      {"path", "path", "", "checkpoint folder: config.json, *.safetensors (sharded or not), tokenizer.model"},
      {"vision_tower", "path", "", "original LLaVA checkpoints: the CLIP checkpoint folder (default: mm_vision_tower)"},
      {"tokenizer", "path", "", "tokenizer.model or its folder (default: path)"},
      {"adapter", "path", "", "a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to load"},
      {"dtype", "string", "float32", "float32, bfloat16 or float16"},
      {"device", "string", "cpu", "cpu, cuda or cuda:N"},
      {"random_init", "bool", "false", "random weights of the configured shape (benchmarks); no weights are read"},
      {"shape", "string", "", "with random_init and no path: llava-1.5-7b or llava-1.5-13b"},
      {"seed", "int", "0", "seed of random_init and of new LoRA weights"},
      {"lora_r", "int", "0", "rank of a new LoRA adapter (0: none; the paper used 128)"},
      {"lora_alpha", "float", "16", "LoRA alpha (the paper used 256); scaling = alpha / r"},
      {"lora_dropout", "float", "0.0", "dropout on the LoRA branch input (the paper used 0.05)"},
      {"lora_rslora", "bool", "false", "rank-stabilised scaling alpha / sqrt(r)"},
      {"lora_target_modules", "list", "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]",
       "language-model linears that get LoRA (the paper: all of them)"},
      {"train_projector", "bool", "false", "make the projector trainable (the paper: yes, at lr 2e-5)"},
      {"max_length", "int", "2048", "maximum tokens after image expansion; longer rows are cut and counted"},
      {"steer_attributes", "string", "", "SteerLM: condition generation on these attribute values, e.g. "
       "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4 (\"\": off)"},
      {"steer_template", "string", "\"{question}\\n{attributes}\"", "SteerLM: how the attributes join the last user turn"},
  };
}

LlavaModel::LlavaModel(const Options& o) : LlavaModel([&] {
  LlavaOptions x;
  x.path = o.get<std::string>("path", "");
  x.vision_tower = o.get<std::string>("vision_tower", "");
  x.tokenizer = o.get<std::string>("tokenizer", "");
  x.adapter = o.get<std::string>("adapter", "");
  x.dtype = o.get<std::string>("dtype", "float32");
  x.device = o.get<std::string>("device", "cpu");
  x.random_init = o.get<bool>("random_init", false);
  x.shape = o.get<std::string>("shape", "");
  x.seed = o.get<uint64_t>("seed", 0);
  x.lora_r = o.get<int64_t>("lora_r", 0);
  x.lora_alpha = o.get<double>("lora_alpha", 16);
  x.lora_dropout = o.get<double>("lora_dropout", 0.0);
  x.lora_rslora = o.get<bool>("lora_rslora", false);
  if (o.has("lora_target_modules")) x.lora_target_modules = o.get<std::vector<std::string>>("lora_target_modules");
  x.train_projector = o.get<bool>("train_projector", false);
  x.max_length = o.get<int64_t>("max_length", 2048);
  x.steer_attributes = o.get<std::string>("steer_attributes", "");
  x.steer_template = o.get<std::string>("steer_template", default_steer_template());
  if (x.path.empty() && !(x.random_init && !x.shape.empty()))
    throw ConfigError(o.where(o.node()) + "llava: give 'path' (a checkpoint folder), or random_init: true with a shape");
  return x;
}()) {}

LlavaModel::LlavaModel(const LlavaOptions& options) : options_(options) {
  dtype_ = parse_dtype(options_.dtype);
  try {
    device_ = torch::Device(options_.device);
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("llava: device '{}': expected cpu, cuda or cuda:N ({})", options_.device, e.what()));
  }
  if (device_.is_cuda() && !torch::cuda::is_available())
    throw ConfigError(fmt::format("llava: device '{}' asked for, but this LibTorch has no usable CUDA device",
                                  options_.device));

  if (!options_.path.empty()) {
    std::string vision_json;
    const std::string config_json = (fs::path(options_.path) / "config.json").string();
    LlavaConfig probe = LlavaConfig::from_file(config_json);
    if (probe.layout == LlavaConfig::Layout::OriginalLlava) {
      std::string tower = options_.vision_tower.empty() ? probe.vision_tower_name : options_.vision_tower;
      if (!tower.empty() && fs::exists(fs::path(tower) / "config.json")) {
        options_.vision_tower = tower;
        vision_json = (fs::path(tower) / "config.json").string();
      } else if (!options_.random_init) {
        throw ConfigError(fmt::format("llava: {} is an original LLaVA checkpoint whose vision tower is '{}'; give "
                                      "'vision_tower: <folder of that CLIP checkpoint>' (no downloads here)",
                                      config_json, tower));
      }
    }
    config_ = vision_json.empty() ? probe : LlavaConfig::from_file(config_json, vision_json);
  } else {
    config_ = preset(options_.shape);
  }
  const int64_t layers = config_.vision.num_hidden_layers;
  vision_layer_ = config_.vision_feature_layer < 0 ? layers + 1 + config_.vision_feature_layer : config_.vision_feature_layer;

  const std::string tok = !options_.tokenizer.empty() ? options_.tokenizer : options_.path;
  if (!tok.empty()) tokenizer_ = Tokenizer::load(tok);
  const fs::path pre = fs::path(options_.path.empty() ? tok : options_.path) / "preprocessor_config.json";
  if (!options_.path.empty() && fs::exists(pre)) image_config_ = image::PreprocessConfig::from_json_file(pre.string());
  image_config_.aspect_mode = image::parse_aspect_mode(config_.image_aspect_ratio == "pad" ? "pad" : "resize");
  if (image_config_.crop_width != config_.vision.image_size || image_config_.crop_height != config_.vision.image_size)
    throw DataError(fmt::format("{}: crop size {}x{} does not match the vision tower's image_size {}", pre.string(),
                                image_config_.crop_width, image_config_.crop_height, config_.vision.image_size));

  build_modules();
  // Move the (not yet filled) parameters first, so weights are written once, straight into their final device
  // and dtype: a 13B checkpoint never exists as float32 in host memory.
  root_->to(device_, dtype_);
  if (options_.random_init) random_init(); else load_checkpoint();
  if (!options_.adapter.empty()) load_adapter(options_.adapter);
  if (options_.lora_r > 0) add_lora(options_.lora_r, options_.lora_alpha, options_.lora_dropout, options_.lora_rslora,
                                    options_.lora_target_modules);
  for (auto& p : projector_->parameters()) p.set_requires_grad(options_.train_projector);
  // A trained projector keeps float32 ("master") weights under a half-precision model, as LoRA A/B do.
  if (options_.train_projector && dtype_ != torch::kFloat32) projector_->to(torch::kFloat32);
  set_training(false);
}

void LlavaModel::build_modules() {
  root_ = std::make_shared<torch::nn::Module>("LlavaForConditionalGeneration");
  vision_ = root_->register_module("vision_tower", ClipVision(config_.vision));
  projector_ = root_->register_module("multi_modal_projector",
                                      Projector(config_.vision.hidden_size, config_.text.hidden_size,
                                                config_.projector_type, config_.projector_bias));
  llama_ = root_->register_module("language_model", Llama(config_.text));
  for (auto& p : root_->parameters()) p.set_requires_grad(false);
}

void LlavaModel::load_checkpoint() {
  const st::Checkpoint ckpt = st::Checkpoint::open(options_.path);
  std::unique_ptr<st::Checkpoint> vision_ckpt;
  if (config_.layout == LlavaConfig::Layout::OriginalLlava && !options_.vision_tower.empty())
    vision_ckpt = std::make_unique<st::Checkpoint>(st::Checkpoint::open(options_.vision_tower));
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : root_->named_parameters(/*recurse=*/true)) {
    const std::string& ours = item.key();
    const auto candidates = hf_candidates(ours, config_.layout);
    const st::Checkpoint* source = nullptr;
    std::string found;
    for (const st::Checkpoint* c : {static_cast<const st::Checkpoint*>(&ckpt), static_cast<const st::Checkpoint*>(vision_ckpt.get())}) {
      if (!c) continue;
      for (const auto& name : candidates)
        if (c->contains(name)) {
          source = c;
          found = name;
          break;
        }
      if (source) break;
    }
    if (!source)
      throw DataError(fmt::format("{}: no tensor for parameter '{}'; looked for: {}", ckpt.path(), ours,
                                  fmt::join(candidates, ", ")));
    std::vector<int64_t> want(item.value().sizes().begin(), item.value().sizes().end());
    source->expect_shape(found, want);
    item.value().copy_(read_tensor(*source, found));
    used.insert(found);
  }
  // Tensors we do not use (the vision tower's post_layernorm, a CLIP text tower, rotary caches) are fine; say
  // how many so a wrong prefix is visible at debug level.
  log()->debug("llava: loaded {} tensors from {} ({} in the file)", used.size(), ckpt.path(), ckpt.size());
  if (config_.text.tie_word_embeddings) llama_->lm_head = llama_->embed_tokens->weight;
}

void LlavaModel::random_init() {
  // HF's _init_weights: normal(0, 0.02) for linear/embedding weights, zero biases, ones for norms.
  // Drawn on the model's device with its default generator, seeded: deterministic per device type.
  torch::NoGradGuard no_grad;
  torch::manual_seed(options_.seed);
  for (auto& item : root_->named_parameters(true)) {
    torch::Tensor p = item.value();
    const std::string& name = item.key();
    const bool norm = name.find("norm") != std::string::npos;
    if (name.size() >= 4 && name.substr(name.size() - 4) == "bias") p.zero_();
    else if (norm) p.fill_(1.0);
    else p.normal_(0.0, 0.02);
  }
  if (config_.text.tie_word_embeddings) llama_->lm_head = llama_->embed_tokens->weight;
}

// ---- LoRA and adapters ----

std::string LlavaModel::peft_prefix() const {
  return config_.layout == LlavaConfig::Layout::HfLlava ? "base_model.model.language_model.model."
                                                        : "base_model.model.model.";
}

std::string LlavaModel::projector_name() const {
  return config_.layout == LlavaConfig::Layout::HfLlava ? "multi_modal_projector" : "model.mm_projector";
}

void LlavaModel::add_lora(int64_t r, double alpha, double dropout, bool rslora, const std::vector<std::string>& targets) {
  torch::manual_seed(options_.seed);
  int64_t added = 0;
  for (auto& [path, lin] : lora_targets(llama_)) {
    const std::string leaf = path.substr(path.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), leaf) == targets.end()) continue;
    if (lin->has_lora()) throw ConfigError(fmt::format("llava: '{}' already has a LoRA adapter (loaded from '{}'); "
                                                       "set lora_r: 0 to train the loaded one", path, options_.adapter));
    lin->add_lora(r, alpha, dropout, rslora);
    ++added;
  }
  if (added == 0)
    throw ConfigError(fmt::format("llava: lora_target_modules {} match no language-model linear (expected names "
                                  "among q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)",
                                  fmt::join(targets, ", ")));
  lora_target_modules_ = targets;
}

std::vector<std::pair<std::string, torch::Tensor>> LlavaModel::trainable_parameters() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (options_.train_projector)
    for (auto& item : projector_->named_parameters())
      out.emplace_back("multi_modal_projector." + item.key(), item.value());
  for (auto& [path, lin] : lora_targets(llama_)) {
    if (!lin->has_lora()) continue;
    out.emplace_back(peft_prefix() + path + ".lora_A.weight", lin->lora_A);
    out.emplace_back(peft_prefix() + path + ".lora_B.weight", lin->lora_B);
  }
  return out;
}

void LlavaModel::set_training(bool on) { root_->train(on); }

void LlavaModel::set_activation_checkpointing(bool on) { llama_->checkpoint_layers = on; }

void LlavaModel::merge_lora() {
  for (auto& [path, lin] : lora_targets(llama_)) lin->merge();
}

void LlavaModel::unmerge_lora() {
  for (auto& [path, lin] : lora_targets(llama_)) lin->unmerge();
}

void LlavaModel::save_adapter(const fs::path& dir) const {
  fs::create_directories(dir);
  st::Writer writer;
  std::vector<std::string> targets;
  int64_t r = 0;
  double alpha = 0, dropout = 0;
  bool rslora = false;
  std::vector<torch::Tensor> keep;  // float32 CPU copies that the writer borrows
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    keep.push_back(c);
    writer.add_borrowed(name, st::Dtype::F32, std::vector<int64_t>(c.sizes().begin(), c.sizes().end()),
                        c.data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float));
  };
  for (auto& [path, lin] : lora_targets(const_cast<Llama&>(llama_))) {
    if (!lin->has_lora()) continue;
    add(peft_prefix() + path + ".lora_A.weight", lin->lora_A);
    add(peft_prefix() + path + ".lora_B.weight", lin->lora_B);
    const std::string leaf = path.substr(path.rfind('.') + 1);
    if (std::find(targets.begin(), targets.end(), leaf) == targets.end()) targets.push_back(leaf);
    r = lin->r, alpha = lin->alpha, dropout = lin->dropout, rslora = lin->rslora;
  }
  if (r == 0) throw Error("llava: save_adapter: the model has no LoRA adapter to save");
  nlohmann::json modules_to_save = nullptr;
  if (options_.train_projector) {
    for (auto& item : const_cast<Projector&>(projector_)->named_parameters())
      add("base_model.model." + projector_name() + "." + item.key(), item.value());
    modules_to_save = nlohmann::json::array({projector_name().substr(projector_name().rfind('.') + 1)});
  }
  writer.set_metadata({{"format", "pt"}});
  writer.write((dir / "adapter_model.safetensors").string());
  nlohmann::json cfg = {{"peft_type", "LORA"},       {"r", r},
                        {"lora_alpha", alpha},       {"lora_dropout", dropout},
                        {"bias", "none"},            {"task_type", "CAUSAL_LM"},
                        {"target_modules", targets}, {"base_model_name_or_path", options_.path},
                        {"fan_in_fan_out", false},   {"use_rslora", rslora},
                        {"use_dora", false},         {"modules_to_save", modules_to_save},
                        {"inference_mode", true}};
  write_text_atomically(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

void LlavaModel::load_adapter(const fs::path& dir) {
  const fs::path cfg_path = dir / "adapter_config.json";
  std::ifstream in(cfg_path);
  if (!in) throw IoError(fmt::format("cannot open '{}' (expected a PEFT adapter folder)", cfg_path.string()));
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw DataError(fmt::format("{}: not valid JSON: {}", cfg_path.string(), e.what()));
  }
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!cfg.contains(key)) throw DataError(fmt::format("{}: missing '{}'", cfg_path.string(), key));
    return cfg[key];
  };
  if (need("peft_type") != "LORA")
    throw DataError(fmt::format("{}: peft_type {} is not supported (expected \"LORA\")", cfg_path.string(),
                                cfg["peft_type"].dump()));
  for (const char* unsupported : {"use_dora", "fan_in_fan_out"})
    if (cfg.value(unsupported, false))
      throw DataError(fmt::format("{}: '{}: true' is not supported", cfg_path.string(), unsupported));
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    if (cfg.contains(pattern) && cfg[pattern].is_object() && !cfg[pattern].empty())
      throw DataError(fmt::format("{}: per-module '{}' is not supported", cfg_path.string(), pattern));
  const int64_t r = need("r").get<int64_t>();
  const double alpha = need("lora_alpha").get<double>();
  const double dropout = cfg.value("lora_dropout", 0.0);
  const bool rslora = cfg.value("use_rslora", false);

  const st::Checkpoint ckpt = st::Checkpoint::open((dir / "adapter_model.safetensors").string());
  std::map<std::string, LoraLinear> by_path;
  for (auto& [path, lin] : lora_targets(llama_)) by_path.emplace(path, lin);
  static const std::regex lora_re(R"((?:.*\.)?(layers\.\d+\.(?:self_attn|mlp)\.\w+)\.lora_([AB])(?:\.default)?\.weight)");
  torch::NoGradGuard no_grad;
  int64_t loaded = 0;
  for (const auto& name : ckpt.names()) {
    std::smatch m;
    if (name.find("vision_tower") != std::string::npos)
      throw DataError(fmt::format("{}: tensor '{}': LoRA on the vision tower is not supported", ckpt.path(), name));
    if (std::regex_match(name, m, lora_re)) {
      auto it = by_path.find(m[1].str());
      if (it == by_path.end())
        throw DataError(fmt::format("{}: tensor '{}': no module '{}' in this {}-layer model", ckpt.path(), name,
                                    m[1].str(), config_.text.num_hidden_layers));
      LoraLinear& lin = it->second;
      if (!lin->has_lora()) lin->add_lora(r, alpha, dropout, rslora);
      torch::Tensor& dst = m[2] == "A" ? lin->lora_A : lin->lora_B;
      ckpt.expect_shape(name, std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end()));
      dst.copy_(read_tensor(ckpt, name));
      ++loaded;
      continue;
    }
    const std::string proj = "base_model.model." + projector_name() + ".";
    if (name.rfind(proj, 0) == 0 || name.find("multi_modal_projector.") != std::string::npos) {
      std::string param = name.substr(name.find("projector.") + 10);
      if (param.rfind("modules_to_save.default.", 0) == 0) param = param.substr(24);
      if (param.rfind("0.", 0) == 0) param = "linear_1." + param.substr(2);
      if (param.rfind("2.", 0) == 0) param = "linear_2." + param.substr(2);
      auto params = projector_->named_parameters();
      if (!params.contains(param))
        throw DataError(fmt::format("{}: tensor '{}': the projector has no parameter '{}'", ckpt.path(), name, param));
      torch::Tensor dst = params[param];
      ckpt.expect_shape(name, std::vector<int64_t>(dst.sizes().begin(), dst.sizes().end()));
      dst.copy_(read_tensor(ckpt, name));
      continue;
    }
    throw DataError(fmt::format("{}: tensor '{}' is neither a LoRA weight of a language-model linear nor a projector "
                                "weight", ckpt.path(), name));
  }
  for (auto& [path, lin] : by_path)
    if (lin->has_lora() && (lin->lora_A.abs().sum().item<double>() == 0 && lin->lora_B.abs().sum().item<double>() == 0))
      log()->warn("llava: adapter {}: '{}' has all-zero LoRA weights", dir.string(), path);
  log()->info("llava: loaded adapter {} ({} LoRA tensors, r {}, alpha {})", dir.string(), loaded, r, alpha);
}

// ---- encoding ----

EncodedSample LlavaModel::encode(const ChatSample& sample) const {
  if (!tokenizer_) throw ConfigError("llava: no tokenizer (give 'tokenizer' or a 'path' with tokenizer.model)");
  const EncodedConversation enc = encode_conversation_v1(*tokenizer_, to_turns(sample), !sample.images.empty());
  if (enc.num_images != static_cast<int64_t>(sample.images.size()))
    throw DataError(fmt::format("conversation has {} <image> placeholder(s) but {} image(s)", enc.num_images,
                                sample.images.size()));
  return EncodedSample{enc.input_ids, enc.labels, sample.images, enc.mismatch};
}

EncodedSample LlavaModel::encode_prompt(const ChatSample& sample) const {
  if (!tokenizer_) throw ConfigError("llava: no tokenizer (give 'tokenizer' or a 'path' with tokenizer.model)");
  std::vector<Turn> turns = to_turns(sample);
  if (!options_.steer_attributes.empty())
    for (auto it = turns.rbegin(); it != turns.rend(); ++it)
      if (it->role == "human") {
        it->text = apply_steer_template(options_.steer_template, it->text, options_.steer_attributes);
        break;
      }
  const EncodedPrompt enc = encode_generation_prompt_v1(*tokenizer_, turns, !sample.images.empty());
  if (enc.num_images != static_cast<int64_t>(sample.images.size()))
    throw DataError(fmt::format("prompt has {} <image> placeholder(s) but {} image(s)", enc.num_images,
                                sample.images.size()));
  return EncodedSample{enc.input_ids, std::vector<int64_t>(enc.input_ids.size(), kIgnore), sample.images, false};
}

torch::Tensor LlavaModel::pixel_values_for(const std::string& path) const {
  std::vector<float> v = image::preprocess_file(path, image_config_);
  return torch::from_blob(v.data(), {3, image_config_.crop_height, image_config_.crop_width}, torch::kFloat32).clone();
}

ModelBatch LlavaModel::collate(const std::vector<EncodedSample>& samples, bool left_pad) const {
  MMR_CHECK(!samples.empty(), "collate of an empty batch");
  const int64_t b = static_cast<int64_t>(samples.size());
  int64_t t = 0;
  for (const auto& s : samples) t = std::max<int64_t>(t, static_cast<int64_t>(s.input_ids.size()));
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;
  torch::Tensor ids = torch::full({b, t}, pad, torch::kInt64);
  torch::Tensor labels = torch::full({b, t}, kIgnore, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, t}, torch::kInt64);
  std::vector<torch::Tensor> pixels;
  for (int64_t i = 0; i < b; ++i) {
    const auto& s = samples[i];
    const int64_t n = static_cast<int64_t>(s.input_ids.size());
    MMR_CHECK(s.labels.size() == s.input_ids.size(), "labels and ids differ in length");
    const int64_t off = left_pad ? t - n : 0;
    ids[i].narrow(0, off, n).copy_(torch::tensor(s.input_ids, torch::kInt64));
    labels[i].narrow(0, off, n).copy_(torch::tensor(s.labels, torch::kInt64));
    mask[i].narrow(0, off, n).fill_(1);
    if (count_placeholders(s.input_ids) != static_cast<int64_t>(s.images.size()))
      throw DataError(fmt::format("sample {} has {} image placeholder(s) but {} image(s)", i,
                                  count_placeholders(s.input_ids), s.images.size()));
    for (const auto& img : s.images) pixels.push_back(pixel_values_for(img));
  }
  ModelBatch out;
  out.input_ids = ids.to(device_);
  out.labels = labels.to(device_);
  out.attention_mask = mask.to(device_);
  if (!pixels.empty()) out.pixel_values = torch::stack(pixels).to(device_);
  out.left_padded = left_pad;
  return out;
}

// ---- forward ----

torch::Tensor LlavaModel::image_features(const torch::Tensor& pixel_values) {
  torch::Tensor h = vision_(pixel_values.to(device_, dtype_), vision_layer_);  // (N, 1+P, Dv)
  if (config_.vision_feature_select_strategy == "default") h = h.narrow(1, 1, h.size(1) - 1);  // drop CLS
  return projector_(h);  // (N, P, D)
}

LlavaModel::Expanded LlavaModel::expand(const ModelBatch& batch) {
  const int64_t b = batch.input_ids.size(0);
  torch::Tensor features;
  if (batch.pixel_values.defined() && batch.pixel_values.size(0) > 0) features = image_features(batch.pixel_values);
  const torch::Tensor ids_cpu = batch.input_ids.to(torch::kCPU), mask_cpu = batch.attention_mask.to(torch::kCPU);
  const torch::Tensor labels_cpu = batch.labels.to(torch::kCPU);
  auto ids_a = ids_cpu.accessor<int64_t, 2>();
  auto mask_a = mask_cpu.accessor<int64_t, 2>();
  auto lab_a = labels_cpu.accessor<int64_t, 2>();
  std::vector<torch::Tensor> rows_embeds, rows_labels;
  std::vector<std::vector<int64_t>> text_pos(b);
  int64_t image_index = 0, longest = 0;
  const int64_t p = config_.vision.num_patches();
  for (int64_t i = 0; i < b; ++i) {
    // LLaVA's prepare_inputs_labels_for_multimodal: drop padding, splice each image's P features in place of
    // its placeholder, cut to the maximum length, pad again.
    std::vector<torch::Tensor> parts, part_labels;
    std::vector<int64_t> run_ids, run_labels;
    int64_t len = 0;
    auto flush = [&] {
      if (run_ids.empty()) return;
      parts.push_back(llama_->embed_tokens(torch::tensor(run_ids, torch::kInt64).to(device_)));
      part_labels.push_back(torch::tensor(run_labels, torch::kInt64));
      run_ids.clear();
      run_labels.clear();
    };
    for (int64_t j = 0; j < ids_cpu.size(1); ++j) {
      if (mask_a[i][j] == 0) continue;
      if (ids_a[i][j] == kPlaceholder) {
        flush();
        if (!features.defined() || image_index >= features.size(0))
          throw DataError(fmt::format("batch row {} has more image placeholders than the batch has images", i));
        parts.push_back(features[image_index++]);
        part_labels.push_back(torch::full({p}, kIgnore, torch::kInt64));
        len += p;
      } else {
        text_pos[i].push_back(len);
        run_ids.push_back(ids_a[i][j]);
        run_labels.push_back(lab_a[i][j]);
        ++len;
      }
    }
    flush();
    torch::Tensor e = torch::cat(parts, 0), l = torch::cat(part_labels, 0);
    if (e.size(0) > options_.max_length) {
      ++truncated_rows_;
      log()->warn("llava: a row of {} tokens (after image expansion) was cut to max_length {} ({} row(s) so far)",
                  e.size(0), options_.max_length, truncated_rows_);
      e = e.narrow(0, 0, options_.max_length);
      l = l.narrow(0, 0, options_.max_length);
      auto& tp = text_pos[i];
      tp.erase(std::remove_if(tp.begin(), tp.end(), [&](int64_t x) { return x >= options_.max_length; }), tp.end());
    }
    longest = std::max(longest, e.size(0));
    rows_embeds.push_back(e);
    rows_labels.push_back(l);
  }
  if (features.defined() && image_index != features.size(0))
    throw DataError(fmt::format("the batch has {} image(s) but {} placeholder(s)", features.size(0), image_index));
  const int64_t d = config_.text.hidden_size;
  Expanded out;
  out.embeds = torch::zeros({b, longest, d}, torch::TensorOptions().dtype(dtype_).device(device_));
  out.labels = torch::full({b, longest}, kIgnore, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, longest}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = rows_embeds[i].size(0), off = batch.left_padded ? longest - n : 0;
    out.embeds[i].narrow(0, off, n).copy_(rows_embeds[i]);
    out.labels[i].narrow(0, off, n).copy_(rows_labels[i]);
    mask[i].narrow(0, off, n).fill_(1);
    if (off) for (auto& x : text_pos[i]) x += off;
  }
  out.labels = out.labels.to(device_);
  out.attention_mask = mask.to(device_);
  out.position_ids = (out.attention_mask.cumsum(1) - 1).clamp_min(0);
  out.text_positions = std::move(text_pos);
  return out;
}

torch::Tensor LlavaModel::hidden_states(const Expanded& e, std::vector<LayerCache>* caches) {
  return llama_->forward(e.embeds, e.attention_mask, e.position_ids, caches);
}

torch::Tensor LlavaModel::logits(const ModelBatch& batch) {
  Expanded e = expand(batch);
  return llama_->lm_head_forward(hidden_states(e, nullptr));
}

SequenceLogps LlavaModel::sequence_logps(const ModelBatch& batch, bool per_token) {
  Expanded e = expand(batch);
  torch::Tensor h = hidden_states(e, nullptr);  // (B, T', D)
  const int64_t b = h.size(0), t = h.size(1);
  // get_batch_logps: logits[:, :-1] predict labels[:, 1:]; only labelled positions count. Only those rows of the
  // hidden states go through lm_head, so no (B, T', V) float32 tensor is made.
  torch::Tensor target = e.labels.narrow(1, 1, t - 1);                  // (B, T'-1)
  torch::Tensor sel = target.ne(kIgnore);
  torch::Tensor idx = sel.nonzero();                                     // (M, 2): row, position
  torch::Tensor rows = idx.select(1, 0), cols = idx.select(1, 1);
  torch::Tensor hs = h.narrow(1, 0, t - 1).index({rows, cols});          // (M, D)
  torch::Tensor lp = torch::log_softmax(llama_->lm_head_forward(hs).to(torch::kFloat32), -1);  // (M, V)
  torch::Tensor tok = lp.gather(1, target.index({rows, cols}).unsqueeze(1)).squeeze(1);        // (M)
  SequenceLogps out;
  out.sum = torch::zeros({b}, tok.options()).index_add(0, rows, tok);
  out.count = sel.sum(1).to(torch::kFloat32);
  out.mean = out.sum / out.count.clamp_min(1);
  if (per_token) {
    const torch::Tensor counts = sel.sum(1).to(torch::kCPU);
    int64_t start = 0;
    for (int64_t i = 0; i < b; ++i) {
      const int64_t n = counts[i].item<int64_t>();
      out.per_token.push_back(tok.narrow(0, start, n));
      start += n;
    }
  }
  return out;
}

torch::Tensor LlavaModel::lm_loss(const ModelBatch& batch) {
  Expanded e = expand(batch);
  torch::Tensor h = hidden_states(e, nullptr);
  const int64_t t = h.size(1);
  torch::Tensor target = e.labels.narrow(1, 1, t - 1);
  torch::Tensor idx = target.ne(kIgnore).nonzero();
  if (idx.size(0) == 0) throw DataError("lm_loss: the batch has no labelled tokens (every row masked?)");
  torch::Tensor rows = idx.select(1, 0), cols = idx.select(1, 1);
  torch::Tensor logits = llama_->lm_head_forward(h.narrow(1, 0, t - 1).index({rows, cols})).to(torch::kFloat32);
  return torch::nn::functional::cross_entropy(logits, target.index({rows, cols}));
}

// ---- generation ----

std::vector<Generation> LlavaModel::generate(const std::vector<ChatSample>& prompts, const GenerationConfig& g) {
  if (prompts.empty()) return {};
  torch::NoGradGuard no_grad;
  const bool was_training = root_->is_training();
  root_->eval();
  std::vector<EncodedSample> enc;
  for (const auto& p : prompts) enc.push_back(encode_prompt(p));
  ModelBatch batch = collate(enc, /*left_pad=*/true);
  Expanded e = expand(batch);
  const int64_t b = e.embeds.size(0), t0 = e.embeds.size(1);
  const int64_t total = t0 + g.max_new_tokens;
  std::vector<LayerCache> caches(static_cast<size_t>(config_.text.num_hidden_layers));
  const auto kv_opts = torch::TensorOptions().dtype(dtype_).device(device_);
  for (auto& c : caches) {
    c.k = torch::empty({b, config_.text.num_key_value_heads, total, config_.text.head_dim}, kv_opts);
    c.v = torch::empty_like(c.k);
  }
  torch::Tensor mask = torch::zeros({b, total}, torch::TensorOptions().dtype(torch::kInt64).device(device_));
  mask.narrow(1, 0, t0).copy_(e.attention_mask);
  torch::Tensor positions = e.position_ids;
  torch::Tensor h = llama_->forward(e.embeds, mask.narrow(1, 0, t0), positions, &caches);
  torch::Tensor last = h.select(1, t0 - 1);  // (B, D)
  torch::Tensor next_pos = positions.select(1, t0 - 1).unsqueeze(1) + 1;  // (B, 1)

  auto gen = at::detail::createCPUGenerator(g.seed);
  std::vector<Generation> out(b);
  std::vector<bool> done(b, false);
  const int64_t eos = tokenizer_ ? tokenizer_->eos_id() : 2;
  const int64_t pad = config_.pad_token_id >= 0 ? config_.pad_token_id : 0;
  for (int64_t step = 0; step < g.max_new_tokens; ++step) {
    torch::Tensor logits = llama_->lm_head_forward(last).to(torch::kFloat32);  // (B, V)
    torch::Tensor next;
    if (g.temperature <= 0) {
      next = logits.argmax(-1);
    } else {
      // HF's order: temperature, top-k, top-p, then sample.
      logits = (logits / g.temperature).to(torch::kCPU);
      if (g.top_k > 0 && g.top_k < logits.size(-1)) {
        torch::Tensor kth = std::get<0>(logits.topk(g.top_k, -1)).select(1, g.top_k - 1).unsqueeze(1);
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<float>::infinity());
      }
      if (g.top_p < 1.0) {
        auto [sorted, order] = logits.sort(-1, /*descending=*/false);
        torch::Tensor cum = sorted.softmax(-1).cumsum(-1);
        torch::Tensor remove = cum <= (1 - g.top_p);
        remove.select(1, remove.size(1) - 1).fill_(false);  // keep at least the best token
        logits = logits.scatter(1, order, sorted.masked_fill(remove, -std::numeric_limits<float>::infinity()));
      }
      next = torch::multinomial(logits.softmax(-1), 1, false, gen).squeeze(1).to(device_);
    }
    const torch::Tensor next_cpu = next.to(torch::kCPU);
    for (int64_t i = 0; i < b; ++i) {
      if (done[i]) continue;
      const int64_t id = next_cpu[i].item<int64_t>();
      out[i].token_ids.push_back(id);
      if (g.stop_at_eos && id == eos) {
        done[i] = true;
        out[i].finish_reason = "eos";
        continue;
      }
      if (!g.stop_strings.empty() && tokenizer_) {
        size_t skipped = 0;
        const std::string text = tokenizer_->decode(out[i].token_ids, &skipped);
        for (const auto& s : g.stop_strings)
          if (!s.empty() && text.find(s) != std::string::npos) {
            done[i] = true;
            out[i].finish_reason = "stop_string";
          }
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool x) { return x; }) || step + 1 == g.max_new_tokens) break;
    // Finished rows keep decoding a pad token that nothing reads.
    torch::Tensor feed = next.clone();
    for (int64_t i = 0; i < b; ++i)
      if (done[i]) feed[i] = pad;
    mask.select(1, t0 + step).fill_(1);
    h = llama_->forward(llama_->embed_tokens(feed.unsqueeze(1)), mask.narrow(1, 0, t0 + step + 1), next_pos, &caches);
    last = h.select(1, 0);
    next_pos = next_pos + 1;
  }
  for (int64_t i = 0; i < b; ++i) {
    auto& o = out[i];
    if (o.finish_reason.empty()) o.finish_reason = "length";
    o.prompt_tokens = e.attention_mask[i].sum().item<int64_t>();
    std::vector<int64_t> text_ids = o.token_ids;
    if (o.finish_reason == "eos") text_ids.pop_back();
    size_t skipped = 0;
    o.text = tokenizer_ ? tokenizer_->decode(text_ids, &skipped) : "";
    if (o.finish_reason == "stop_string")
      for (const auto& s : g.stop_strings) {
        const size_t at = o.text.find(s);
        if (!s.empty() && at != std::string::npos) o.text = o.text.substr(0, at);
      }
  }
  root_->train(was_training);
  return out;
}

}  // namespace mmr::llava

