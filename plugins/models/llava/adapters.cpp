// The llava model's LoRA and PEFT adapters: adding LoRA, the trainable parameter groups, switching adapters off
// (a frozen reference), merging, and PEFT-compatible save and load.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "core/lib/util/atomic_file.h"
#include "internal.h"
#include "llava.h"
#include "core/lib/util/json_safe.h"

namespace fs = std::filesystem;
namespace st = mmr::safetensors;

namespace mmr::llava {


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

// `projector` first: the checkpoints of earlier versions list its tensors first.
std::vector<ParameterGroup> LlavaModel::parameter_groups() {
  MMR_CHECK(!merged_for_inference_, "llava: the adapter was merged into the weights for generation; it cannot be "
                                    "trained any more");
  std::vector<ParameterGroup> groups;
  if (options_.train_projector) {
    ParameterGroup projector{"projector", {}};
    for (auto& item : projector_->named_parameters())
      projector.params.emplace_back("multi_modal_projector." + item.key(), item.value());
    groups.push_back(std::move(projector));
  }
  ParameterGroup lora{"lora", {}};
  for (auto& [path, lin] : lora_targets(llama_)) {
    if (!lin->has_lora()) continue;
    lora.params.emplace_back(peft_prefix() + path + ".lora_A.weight", lin->lora_A);
    lora.params.emplace_back(peft_prefix() + path + ".lora_B.weight", lin->lora_B);
  }
  if (!lora.params.empty()) groups.push_back(std::move(lora));
  return groups;
}

// PEFT's disable_adapter(): LoRA branches off and the projector as loaded (modules_to_save keep the original).
void LlavaModel::set_adapters_enabled(bool on) {
  if (merged_for_inference_ && !on)
    throw Error("llava: the adapter was merged into the weights for generation (it was not being trained), so it "
                "cannot be turned off; load the model again to use it without the adapter");
  for (auto& [path, lin] : lora_targets(llama_)) {
    if (lin->merged && !on)
      throw Error("llava: cannot disable a merged LoRA adapter ('" + path + "'); unmerge it first");
    lin->enabled = on;
  }
  adapters_enabled_ = on;
  forget_decode_state();
}

void LlavaModel::freeze_base_projector() {
  base_projector_ = Projector(config_.vision.hidden_size, config_.text.hidden_size, config_.projector_type,
                              config_.projector_bias);
  base_projector_->to(device_, dtype_);
  torch::NoGradGuard no_grad;
  auto from = projector_->named_parameters();
  for (auto& item : base_projector_->named_parameters()) {
    item.value().copy_(from[item.key()]);
    item.value().set_requires_grad(false);
  }
}

void LlavaModel::set_training(bool on) {
  MMR_CHECK(!(on && merged_for_inference_), "llava: the adapter was merged into the weights for generation; it "
                                            "cannot be trained any more");
  trained_ = trained_ || on;
  if (on) forget_decode_state();  // the trainer's buffers need the memory
  root_->train(on);
}

void LlavaModel::set_activation_checkpointing(bool on) { llama_->checkpoint_layers = on; }

void LlavaModel::merge_lora() {
  forget_decode_state();
  for (auto& [path, lin] : lora_targets(llama_)) lin->merge();
}

void LlavaModel::unmerge_lora() {
  forget_decode_state();
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
  write_file_atomic(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

namespace {

// adapter_config.json as PEFT writes it, limited to what this model supports (plain LoRA).
struct AdapterConfig {
  int64_t r = 0;
  double alpha = 0, dropout = 0;
  bool rslora = false;
};

AdapterConfig read_adapter_config(const fs::path& dir) {
  const fs::path cfg_path = dir / "adapter_config.json";
  std::ifstream in(cfg_path);
  if (!in) throw IoError(fmt::format("cannot open '{}' (expected a PEFT adapter folder)", cfg_path.string()));
  nlohmann::json cfg;
  try {
    cfg = parse_json_limited(in);
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
  return {need("r").get<int64_t>(), need("lora_alpha").get<double>(), cfg.value("lora_dropout", 0.0),
          cfg.value("use_rslora", false)};
}

}  // namespace

void LlavaModel::fold_adapter(const fs::path& dir) {
  std::vector<std::pair<std::string, LoraLinear>> targets = lora_targets(llama_);
  for (const auto& [path, lin] : targets)
    if (lin->has_lora())
      throw ConfigError(fmt::format("llava: merge_adapters: '{}' already has a LoRA branch", path));
  load_adapter(dir);
  torch::NoGradGuard no_grad;
  for (auto& [path, lin] : targets) {
    if (!lin->has_lora()) continue;
    lin->merge();
    lin->drop_lora();
  }
}

void LlavaModel::load_adapter(const fs::path& dir) {
  if (merged_for_inference_)
    throw Error(fmt::format("llava: cannot load adapter {}: the previous one was merged into the weights for "
                            "generation; load the model again", dir.string()));
  forget_decode_state();
  const AdapterConfig ac = read_adapter_config(dir);
  const int64_t r = ac.r;
  const double alpha = ac.alpha, dropout = ac.dropout;
  const bool rslora = ac.rslora;

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
      if (!projector_)
        throw DataError(fmt::format("{}: tensor '{}' is a projector weight, but this is a text-only model", ckpt.path(),
                                    name));
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

}  // namespace mmr::llava
