// The LLaVA-1.5 network in LibTorch: CLIP ViT vision tower, projector, LLaMA decoder, LoRA linears.
//
// Written to match HF transformers' modeling_clip.py / modeling_llava.py / modeling_llama.py and PEFT's
// lora.Linear numerically (float32 on CPU to ~1e-5). Module and parameter names follow HF so weight loading is
// a plain name map. Shape letters: B batch, T tokens, S key/value length, D width, H heads, K key/value heads,
// E head dim, N images, P patches, V vocabulary.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <optional>
#include <string>
#include <vector>

#include "config.h"

// at::scaled_dot_product_attention (fused flash / memory-efficient kernels) from LibTorch 2.0; grouped-query
// attention inside it (enable_gqa) from 2.5. Debian's LibTorch 1.13 keeps the plain matmul-softmax path.
#if TORCH_VERSION_MAJOR >= 2
#define MMR_HAS_SDPA 1
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define MMR_HAS_SDPA_GQA 1
#endif

namespace mmr::llava {

// A linear layer with an optional LoRA branch (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language
// Models", eq. 3): y = x Wᵀ + b + dropout(x) Aᵀ Bᵀ · s, with s = alpha / r (or alpha / √r with rsLoRA, Kalajdzievski
// 2023). The base weight is frozen; A and B are the trainable parameters. merge() folds B A s into W.
struct LoraLinearImpl : torch::nn::Module {
  LoraLinearImpl(int64_t in_features, int64_t out_features, bool bias);
  torch::Tensor forward(const torch::Tensor& x);  // (..., in) -> (..., out)
  torch::Tensor forward_add(const torch::Tensor& x, const torch::Tensor& residual);  // residual + forward(x)

  void add_lora(int64_t r, double alpha, double dropout, bool rslora);
  bool has_lora() const { return r > 0; }
  bool lora_active() const { return has_lora() && !merged && enabled; }  // forward adds the branch
  void merge();
  void unmerge();
  // After merge(): the branch is gone for good (its delta lives in W); add_lora may add a new one. LibTorch
  // cannot unregister a parameter, so the slots stay registered, emptied and frozen, and add_lora refills them.
  void drop_lora();

  int64_t in_features, out_features;
  torch::Tensor weight, bias;      // (out, in), (out) or undefined
  torch::Tensor lora_A, lora_B;    // (r, in), (out, r)
  int64_t r = 0;
  double alpha = 0, scaling = 0, dropout = 0;
  bool rslora = false, merged = false;
  bool enabled = true;  // false: the base layer alone (LanguageModel::set_adapters_enabled)
};
TORCH_MODULE(LoraLinear);

// ---- CLIP vision tower (modeling_clip.CLIPVisionTransformer) ----

struct ClipLayerImpl : torch::nn::Module {
  ClipLayerImpl(const VisionConfig& c);
  torch::Tensor forward(const torch::Tensor& x);  // (N, 1+P, D)
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  int64_t heads, head_dim;
  bool quick_gelu;
};
TORCH_MODULE(ClipLayer);

struct ClipVisionImpl : torch::nn::Module {
  explicit ClipVisionImpl(const VisionConfig& c);
  // Hidden states after `layer` encoder layers (0 = the embeddings after pre_layrnorm), HF's hidden_states[layer].
  torch::Tensor forward(const torch::Tensor& pixel_values, int64_t layer);  // (N, 3, S, S) -> (N, 1+P, D)
  VisionConfig config;
  torch::nn::Conv2d patch_embedding{nullptr};
  torch::Tensor class_embedding;  // (D)
  torch::nn::Embedding position_embedding{nullptr};
  torch::nn::LayerNorm pre_layrnorm{nullptr};  // sic: HF's name
  torch::nn::ModuleList layers;
};
TORCH_MODULE(ClipVision);

// ---- projector (LLaVA-1.5 "mlp2x_gelu", or "linear") ----

struct ProjectorImpl : torch::nn::Module {
  ProjectorImpl(int64_t vision_dim, int64_t text_dim, const std::string& type, bool bias);
  torch::Tensor forward(const torch::Tensor& patches);  // (N, P, Dv) -> (N, P, D)
  torch::nn::Linear linear_1{nullptr}, linear_2{nullptr};
  bool two_layers;
};
TORCH_MODULE(Projector);

// ---- LLaMA decoder (modeling_llama) ----

struct RmsNormImpl : torch::nn::Module {
  RmsNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RmsNorm);

// Rotary embeddings (Su et al. 2021, RoFormer) with the scaling variants a config may name: linear
// (position interpolation), dynamic NTK, llama3 and YaRN, as transformers' modeling_rope_utils computes them.
class Rope {
 public:
  Rope(const TextConfig& c);
  // cos and sin for the given positions: (B, T) -> two (B, T, E) tensors in `dtype`, sin with its first half
  // negated (what rotate_half's sign becomes in apply_rope, modules.cpp). `max_positions` bounds the
  // positions (all < it): they are then looked up in a table on their device, with no wait for the device.
  std::pair<torch::Tensor, torch::Tensor> cos_sin(const torch::Tensor& position_ids, torch::Dtype dtype,
                                                  int64_t max_positions) const;
  // Makes the table hold positions < n now (a graph-captured step must find it complete). Returns the table's
  // address: a captured step reads it there, so a new one means new captures.
  const void* reserve(int64_t n, torch::Dtype dtype, const torch::Device& device) const;
  bool dynamic() const { return c_.rope.type == "dynamic"; }

 private:
  torch::Tensor inv_freq_for(int64_t seq_len) const;
  std::pair<torch::Tensor, torch::Tensor> compute(const torch::Tensor& positions, const torch::Tensor& inv,
                                                  torch::Dtype dtype) const;
  TextConfig c_;
  torch::Tensor inv_freq_;  // (E/2) float32 on CPU
  double attention_scaling_ = 1.0;
  // cos/sin of positions 0..n-1, (n, E), computed exactly as cos_sin computes them for one position.
  mutable torch::Tensor cos_table_, sin_table_;
};

// One layer's key/value cache: preallocated (B, K, S_max, E), filled up to `length`. A decoding step that must not
// read host-side state (one captured as a CUDA graph) gives `write_at` instead: a one-element tensor on the
// device holding the slot its token's key/value go to; it then attends over the first `span` slots, whose
// unwritten ones the attention mask hides.
struct LayerCache {
  torch::Tensor k, v;
  int64_t length = 0;
  torch::Tensor write_at;
  int64_t span = 0;
};

struct LlamaLayerImpl : torch::nn::Module {
  LlamaLayerImpl(const TextConfig& c);
  // x (B, T, D); cos/sin (B, T, E); mask (B, 1, T, S) additive float; cache optional.
  // `causal`: attend causally with no mask (right-padded batches without a cache; mask is then undefined).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, LayerCache* cache, bool causal = false);
  // For inference: q/k/v and gate/up each run as one GEMM. Their weights become views of one packed tensor
  // (names, checkpoint layout and in-place updates unchanged); forward uses it while no LoRA branch is active
  // on them and the views still point into it. True when it (re)packed: the weights moved.
  bool pack_projections();
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  LoraLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  LoraLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  int64_t heads, kv_heads, head_dim;
  torch::Tensor qkv_weight, gate_up_weight;  // packed, or undefined

 private:
  struct Projected {
    torch::Tensor qk;       // (B, T, H+K, E) from the packed weight, else undefined
    torch::Tensor q, k, v;  // (B, T, H or K, E); q and k undefined when qk is given
  };
  Projected project_qkv(const torch::Tensor& h);
  // RoPE, the cache update and attention as ATen ops: (B, T, H·E).
  torch::Tensor attend(const Projected& p, const torch::Tensor& cos, const torch::Tensor& sin, const torch::Tensor& mask,
                       LayerCache* cache, bool causal);
  torch::Tensor mlp(const torch::Tensor& h, const torch::Tensor& x);  // x + the MLP of h
};
TORCH_MODULE(LlamaLayer);

struct LlamaImpl : torch::nn::Module {
  explicit LlamaImpl(const TextConfig& c);
  // Final hidden states (after the last norm): embeds (B, T, D), attention_mask (B, S) with S = past + T,
  // position_ids (B, T). `caches` has one entry per layer or is empty (no cache).
  // `causal_only`: no row has padding before its tokens (right padding or none), so with nothing cached before
  // them a causal mask alone is exact at every real position (SDPA's is_causal, no mask tensor: flash attention).
  torch::Tensor forward(const torch::Tensor& embeds, const torch::Tensor& attention_mask,
                        const torch::Tensor& position_ids, std::vector<LayerCache>* caches, bool causal_only = false);
  // The same with a mask of the caller's (B, 1, T, T) additive, no cache: rows that pack several sequences.
  torch::Tensor forward_masked(const torch::Tensor& embeds, const torch::Tensor& mask, const torch::Tensor& position_ids);
  torch::Tensor lm_head_forward(const torch::Tensor& hidden);  // (..., D) -> (..., V)
  // Training: keep only each layer's input and recompute the layer in the backward pass (no cache, grad mode on).
  bool checkpoint_layers = false;
  TextConfig config;
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  RmsNorm norm{nullptr};
  torch::Tensor lm_head;  // (V, D); the embedding weight itself when tied
  Rope rope;

 private:
  torch::Tensor run_layers(const torch::Tensor& embeds, const torch::Tensor& mask, const torch::Tensor& position_ids,
                           int64_t max_positions, std::vector<LayerCache>* caches, bool causal);
};
TORCH_MODULE(Llama);

// An attention mask from which keys each query sees, visible (B, T, S) bool -> (B, 1, T, S) additive: hidden keys
// get the dtype's minimum, as HF's masks.
torch::Tensor additive_mask_of(const torch::Tensor& visible, torch::Dtype dtype);

// One decoder layer through the recomputing autograd node (see modules.cpp).
torch::Tensor checkpointed_layer_forward(LlamaLayerImpl& layer, const torch::Tensor& x, const torch::Tensor& cos,
                                         const torch::Tensor& sin, const torch::Tensor& mask, bool causal);

// Every LoRA-capable linear of the language model with its PEFT-style path relative to the LLaMA model
// ("layers.3.self_attn.q_proj").
std::vector<std::pair<std::string, LoraLinear>> lora_targets(Llama& llama);

}  // namespace mmr::llava
