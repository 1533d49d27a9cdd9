// The `llava` model plugin: options, construction and loading of checkpoints. See llava.h; the rest of the class
// is in adapters.cpp (LoRA, PEFT adapters), forward.cpp (encoding, batches, log-probs) and generate.cpp.
// Shape letters as in modules.h.
#include "llava.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>
#include <sched.h>

#include <cstdlib>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/lib/safetensors/safetensors.h"
#include "internal.h"

namespace fs = std::filesystem;
namespace st = mmr::safetensors;

namespace mmr::llava {
namespace {

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

}  // namespace

std::shared_ptr<spdlog::logger> log() {
  auto l = spdlog::get("llava");
  return l ? l : spdlog::default_logger();
}

torch::Tensor read_tensor(const st::Checkpoint& ckpt, const std::string& name) {
  const st::TensorView v = ckpt.view(name);
  const auto type = torch_type(v.info->dtype, *v.file, name);
  return torch::from_blob(const_cast<uint8_t*>(v.data), v.info->shape, torch::TensorOptions().dtype(type)).clone();
}

// ---- construction and loading ----

const char* LlavaModel::summary() {
  return "LLaVA-1.5 (CLIP ViT + projector + LLaMA) in LibTorch: llava-hf and original checkpoints, plain "
         "LLaMA/Vicuna (text-only), LoRA/PEFT adapters, KV-cache generation, response log-probs";
}

LlavaOptions::LlavaOptions() {
  OptionBinder defaults;
  bind(defaults);
}

void LlavaOptions::bind(OptionBinder& o) {
  o.optional("path", &path, "checkpoint folder: config.json, *.safetensors (sharded or not), tokenizer.model; a "
             "LlamaForCausalLM checkpoint (Vicuna) is a text-only model", "path");
  o.optional("vision_tower", &vision_tower, "original LLaVA checkpoints: the CLIP checkpoint folder (default: mm_vision_tower)", "path");
  o.optional("tokenizer", &tokenizer, "tokenizer.model or its folder (default: path)", "path");
  o.optional("adapter", &adapter, "a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) to load", "path");
  o.bind("merge_adapters", &merge_adapters, std::vector<std::string>{},
         "PEFT adapters folded into the weights at load, in order, before `adapter` and a new LoRA (models made in "
         "steps: each step's adapter becomes part of the next step's base, as merge_and_unload)", "paths");
  o.bind("dtype", &dtype, "float32", "float32, bfloat16 or float16");
  o.bind("device", &device, "cpu", "cpu, cuda or cuda:N");
  o.bind("random_init", &random_init, false, "random weights of the configured shape (benchmarks); no weights are read");
  o.optional("shape", &shape, "with random_init and no path: llava-1.5-7b or llava-1.5-13b");
  o.bind("seed", &seed, 0, "seed of new LoRA weights (a training stage gives it the trial seed unless set here)");
  o.bind("init_seed", &init_seed, 0, "seed of random_init's weights (apart from `seed`: a training stage and an "
         "evaluation of one random_init model draw the same weights)");
  o.bind("lora_r", &lora_r, 0, "rank of a new LoRA adapter (0: none; the paper used 128)");
  o.bind("lora_alpha", &lora_alpha, 16.0, "LoRA alpha (the paper used 256); scaling = alpha / r");
  o.bind("lora_dropout", &lora_dropout, 0.0, "dropout on the LoRA branch input (the paper used 0.05)");
  o.bind("lora_rslora", &lora_rslora, false, "rank-stabilised scaling alpha / sqrt(r)");
  o.bind("lora_target_modules", &lora_target_modules,
         std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
         "language-model linears that get LoRA (the paper: all of them)");
  o.bind("train_projector", &train_projector, false, "make the projector trainable (the paper: yes, at lr 2e-5)");
  o.bind("max_length", &max_length, 2048, "maximum tokens after image expansion; longer rows are cut and counted");
  o.optional("prompt_template", &prompt_template, "generation: the last user turn becomes this text with {prompt} "
         "replaced by it, e.g. SteerLM's \"{prompt}\\nHelpfulness:4,...\" (\"\": off)");
  o.optional("image_aspect_ratio", &image_aspect_ratio, "how images are made square: pad (LLaVA-1.5's training), "
             "center_crop (CLIP's own processor, as LLaVA's model_vqa.py evaluated), resize; default: the checkpoint's "
             "image_aspect_ratio (\"pad\" -> pad, anything else -> center_crop, as LLaVA's process_images)");
  o.check(!path.empty() || (random_init && !shape.empty()), "path",
          "give 'path' (a checkpoint folder), or random_init: true with a shape");
}

LlavaModel::LlavaModel(const Options& o) : LlavaModel(read_options<LlavaOptions>(o)) {}

namespace {

// LibTorch's intra-op pool, sized to the CPUs this process may run on. Measured on the 2-core machine: Debian's
// LibTorch 1.13 ran the CPU model on one thread by default (user time = wall time), and a training stage of the
// main job took 30 s where two threads take 17 s. OMP_NUM_THREADS, when set, is left to decide.
void size_cpu_threads() {
  if (std::getenv("OMP_NUM_THREADS")) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return;
  const int cpus = CPU_COUNT(&set);
  if (cpus > 0 && torch::get_num_threads() != cpus) torch::set_num_threads(cpus);
}

}  // namespace

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
  if (device_.is_cpu()) size_cpu_threads();

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
  const std::string tok = !options_.tokenizer.empty() ? options_.tokenizer : options_.path;
  if (!tok.empty()) tokenizer_ = Tokenizer::load(tok);
  if (config_.has_vision()) set_up_images(tok);
  else if (options_.train_projector)
    throw ConfigError(fmt::format("llava: train_projector: {} is a text-only LLaMA checkpoint (no projector)",
                                  options_.path));

  build_modules();
  // Move the (not yet filled) parameters first, so weights are written once, straight into their final device
  // and dtype: a 13B checkpoint never exists as float32 in host memory.
  root_->to(device_, dtype_);
  if (options_.random_init) random_init(); else load_checkpoint();
  for (const auto& dir : options_.merge_adapters) fold_adapter(dir);
  if (config_.has_vision() && (options_.train_projector || !options_.adapter.empty())) freeze_base_projector();
  if (!options_.adapter.empty()) load_adapter(options_.adapter);
  if (options_.lora_r > 0) add_lora(options_.lora_r, options_.lora_alpha, options_.lora_dropout, options_.lora_rslora,
                                    options_.lora_target_modules);
  if (projector_) {
    for (auto& p : projector_->parameters()) p.set_requires_grad(options_.train_projector);
    // A trained projector keeps float32 ("master") weights under a half-precision model, as LoRA A/B do.
    if (options_.train_projector && dtype_ != torch::kFloat32) projector_->to(torch::kFloat32);
  }
  set_training(false);
}

// The vision side's settings: the feature layer and the image preprocessing (preprocessor_config.json beside the
// checkpoint, the checkpoint's image_aspect_ratio, the option image_aspect_ratio).
void LlavaModel::set_up_images(const std::string& tok) {
  const int64_t layers = config_.vision.num_hidden_layers;
  vision_layer_ = config_.vision_feature_layer < 0 ? layers + 1 + config_.vision_feature_layer : config_.vision_feature_layer;
  const fs::path pre = fs::path(options_.path.empty() ? tok : options_.path) / "preprocessor_config.json";
  if (!options_.path.empty() && fs::exists(pre)) image_config_ = image::PreprocessConfig::from_json_file(pre.string());
  // LLaVA's process_images pads when image_aspect_ratio is "pad" and otherwise calls the CLIP processor itself
  // (shortest edge, centre crop).
  image_config_.aspect_mode = image::parse_aspect_mode(config_.image_aspect_ratio == "pad" ? "pad" : "center_crop");
  if (!options_.image_aspect_ratio.empty()) set_image_preprocessing(options_.image_aspect_ratio);
  if (image_config_.crop_width != config_.vision.image_size || image_config_.crop_height != config_.vision.image_size)
    throw DataError(fmt::format("{}: crop size {}x{} does not match the vision tower's image_size {}", pre.string(),
                                image_config_.crop_width, image_config_.crop_height, config_.vision.image_size));
}

bool LlavaModel::set_image_preprocessing(const std::string& mode) {
  if (!config_.has_vision()) return false;
  if (mode.empty()) {
    image_config_.aspect_mode = image::parse_aspect_mode(config_.image_aspect_ratio == "pad" ? "pad" : "center_crop");
    return true;
  }
  try {
    image_config_.aspect_mode = image::parse_aspect_mode(mode);
  } catch (const std::exception&) {
    throw ConfigError(fmt::format("llava: image preprocessing '{}': expected pad, center_crop or resize", mode));
  }
  return true;
}

void LlavaModel::build_modules() {
  root_ = std::make_shared<torch::nn::Module>("LlavaForConditionalGeneration");
  if (config_.has_vision()) {
    vision_ = root_->register_module("vision_tower", ClipVision(config_.vision));
    projector_ = root_->register_module("multi_modal_projector",
                                        Projector(config_.vision.hidden_size, config_.text.hidden_size,
                                                  config_.projector_type, config_.projector_bias));
  }
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
  // HF's _init_weights: normal(0, initializer_range) for linear/embedding weights (the language model's from its
  // config, default 0.02; 0.02 elsewhere), zero biases, ones for norms.
  // Drawn on the model's device with its default generator, seeded: deterministic per device type.
  torch::NoGradGuard no_grad;
  torch::manual_seed(options_.init_seed);
  for (auto& item : root_->named_parameters(true)) {
    torch::Tensor p = item.value();
    const std::string& name = item.key();
    const bool norm = name.find("norm") != std::string::npos;
    const bool language = name.rfind("language_model.", 0) == 0;
    if (name.size() >= 4 && name.substr(name.size() - 4) == "bias") p.zero_();
    else if (norm) p.fill_(1.0);
    else p.normal_(0.0, language ? config_.text.initializer_range : 0.02);
  }
  if (config_.text.tie_word_embeddings) llama_->lm_head = llama_->embed_tokens->weight;
}


}  // namespace mmr::llava
