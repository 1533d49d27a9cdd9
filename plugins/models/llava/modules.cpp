// The LLaVA-1.5 network. See modules.h; every forward mirrors the HF implementation named beside it.
#include "modules.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "core/api/error.h"
#include "fast_linear.h"

namespace mmr::llava {

namespace F = torch::nn::functional;

// ---- LoRA ----

LoraLinearImpl::LoraLinearImpl(int64_t in, int64_t out, bool with_bias) : in_features(in), out_features(out) {
  weight = register_parameter("weight", torch::empty({out, in}), /*requires_grad=*/false);
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}), /*requires_grad=*/false);
}

void LoraLinearImpl::add_lora(int64_t rank, double a, double p, bool rs) {
  MMR_CHECK(rank > 0, "LoRA rank must be positive");
  r = rank;
  alpha = a;
  dropout = p;
  rslora = rs;
  scaling = rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
  // A and B are float32 whatever the base weight's dtype: they are the trained ("master") weights, cast to the
  // compute dtype on use, as mixed-precision training keeps them (a bf16 AdamW update would round most steps away).
  auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(weight.device());
  // PEFT's default init: A ~ kaiming_uniform(a=√5) (as nn.Linear), B = 0, so the adapter starts as identity.
  torch::Tensor a_init = torch::empty({r, in_features}, opts);
  torch::nn::init::kaiming_uniform_(a_init, std::sqrt(5.0));
  torch::Tensor b_init = torch::zeros({out_features, r}, opts);
  if (lora_A.defined()) {  // slots left by drop_lora
    torch::NoGradGuard no_grad;
    lora_A.set_data(a_init);
    lora_B.set_data(b_init);
    lora_A.set_requires_grad(true);
    lora_B.set_requires_grad(true);
    return;
  }
  lora_A = register_parameter("lora_A", a_init, /*requires_grad=*/true);
  lora_B = register_parameter("lora_B", b_init, /*requires_grad=*/true);
}

void LoraLinearImpl::drop_lora() {
  MMR_CHECK(merged, "drop_lora: merge the LoRA branch first");
  torch::NoGradGuard no_grad;
  lora_A.set_requires_grad(false);
  lora_B.set_requires_grad(false);
  lora_A.set_data(torch::zeros({0, in_features}, lora_A.options()));
  lora_B.set_data(torch::zeros({out_features, 0}, lora_B.options()));
  r = 0;
  merged = false;
}

torch::Tensor LoraLinearImpl::forward(const torch::Tensor& x) {
  torch::Tensor y = F::linear(x, weight, bias);
  if (!has_lora() || merged || !enabled) return y;
  torch::Tensor h = (dropout > 0 && is_training()) ? F::dropout(x, F::DropoutFuncOptions().p(dropout).training(true)) : x;
  // PEFT: result + lora_B(lora_A(dropout(x))) * scaling, the scaled sum inside the second GEMM (alpha = scaling,
  // beta = 1) on the base output, which nothing else reads (its GEMM's backward needs x and W only).
  const torch::Tensor ha = F::linear(h, lora_A.to(h.scalar_type()));
  const torch::Tensor y2 = y.view({-1, out_features});
  y2.addmm_(ha.reshape({-1, r}), lora_B.to(h.scalar_type()).t(), /*beta=*/1, /*alpha=*/scaling);
  return y;
}

torch::Tensor LoraLinearImpl::forward_add(const torch::Tensor& x, const torch::Tensor& residual) {
  if (!lora_active() && !bias.defined())
    if (auto y = fast_linear(x, weight, residual)) return *y;  // a decoding step on a GPU (fast_linear.h)
  if (lora_active() || bias.defined() || !x.is_cuda()) return residual + forward(x);
  // residual + x Wᵀ as one GEMM (its beta = 1): one kernel less per call; the sum is rounded once.
  const torch::Tensor r2 = residual.reshape({-1, out_features}), x2 = x.reshape({-1, in_features});
  return torch::addmm(r2, x2, weight.t()).view(residual.sizes());
}

void LoraLinearImpl::merge() {
  if (!has_lora() || merged) return;
  torch::NoGradGuard no_grad;
  weight.add_(torch::matmul(lora_B.to(torch::kFloat32), lora_A.to(torch::kFloat32)).mul_(scaling).to(weight.dtype()));
  merged = true;
}

void LoraLinearImpl::unmerge() {
  if (!has_lora() || !merged) return;
  torch::NoGradGuard no_grad;
  weight.sub_(torch::matmul(lora_B.to(torch::kFloat32), lora_A.to(torch::kFloat32)).mul_(scaling).to(weight.dtype()));
  merged = false;
}

// ---- CLIP ----

ClipLayerImpl::ClipLayerImpl(const VisionConfig& c)
    : heads(c.num_attention_heads), head_dim(c.hidden_size / c.num_attention_heads),
      quick_gelu(c.hidden_act == "quick_gelu") {
  const int64_t d = c.hidden_size;
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(c.layer_norm_eps)); };
  layer_norm1 = register_module("layer_norm1", ln());
  layer_norm2 = register_module("layer_norm2", ln());
  q_proj = register_module("q_proj", torch::nn::Linear(d, d));
  k_proj = register_module("k_proj", torch::nn::Linear(d, d));
  v_proj = register_module("v_proj", torch::nn::Linear(d, d));
  out_proj = register_module("out_proj", torch::nn::Linear(d, d));
  fc1 = register_module("fc1", torch::nn::Linear(d, c.intermediate_size));
  fc2 = register_module("fc2", torch::nn::Linear(c.intermediate_size, d));
}

torch::Tensor ClipLayerImpl::forward(const torch::Tensor& x) {  // (N, L, D)
  const int64_t n = x.size(0), len = x.size(1);
  torch::Tensor h = layer_norm1(x);
  auto split = [&](const torch::Tensor& t) { return t.view({n, len, heads, head_dim}).transpose(1, 2); };  // (N, H, L, E)
  const torch::Tensor q = split(q_proj(h)), k = split(k_proj(h)), v = split(v_proj(h));
  // CLIPAttention: softmax(q kᵀ · E^-½) v, no mask for the vision tower (HF's "sdpa" one where LibTorch has it).
#ifdef MMR_HAS_SDPA
  torch::Tensor o = at::scaled_dot_product_attention(q, k, v);
#else
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) * std::pow(static_cast<double>(head_dim), -0.5);
  torch::Tensor attn = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  torch::Tensor o = torch::matmul(attn, v);
#endif
  o = o.transpose(1, 2).reshape({n, len, heads * head_dim});
  torch::Tensor x1 = x + out_proj(o);
  h = fc1(layer_norm2(x1));
  h = quick_gelu ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);  // quick_gelu: x·σ(1.702x)
  return x1 + fc2(h);
}

ClipVisionImpl::ClipVisionImpl(const VisionConfig& c) : config(c) {
  const int64_t d = c.hidden_size;
  patch_embedding = register_module(
      "patch_embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(c.num_channels, d, c.patch_size).stride(c.patch_size).bias(false)));
  class_embedding = register_parameter("class_embedding", torch::zeros({d}));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(c.num_patches() + 1, d));
  pre_layrnorm = register_module("pre_layrnorm",
                                 torch::nn::LayerNorm(torch::nn::LayerNormOptions({d}).eps(c.layer_norm_eps)));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(ClipLayer(c));
}

torch::Tensor ClipVisionImpl::forward(const torch::Tensor& pixel_values, int64_t layer) {
  const int64_t n = pixel_values.size(0);
  torch::Tensor patches = patch_embedding(pixel_values.to(patch_embedding->weight.scalar_type()));  // (N, D, g, g)
  patches = patches.flatten(2).transpose(1, 2);                                                    // (N, P, D)
  torch::Tensor cls = class_embedding.view({1, 1, -1}).expand({n, 1, -1});
  torch::Tensor x = torch::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);     // (N, 1+P, D)
  x = pre_layrnorm(x);
  for (int64_t i = 0; i < layer; ++i) x = layers[i]->as<ClipLayer>()->forward(x);
  return x;
}

// ---- projector ----

ProjectorImpl::ProjectorImpl(int64_t vision_dim, int64_t text_dim, const std::string& type, bool bias)
    : two_layers(type == "mlp2x_gelu") {
  linear_1 = register_module("linear_1",
                             torch::nn::Linear(torch::nn::LinearOptions(vision_dim, text_dim).bias(bias)));
  if (two_layers)
    linear_2 = register_module("linear_2",
                               torch::nn::Linear(torch::nn::LinearOptions(text_dim, text_dim).bias(bias)));
}

torch::Tensor ProjectorImpl::forward(const torch::Tensor& patches) {
  // A trained projector keeps float32 weights under a half-precision model (see LlavaModel): compute in float32
  // then, and hand the language model its dtype.
  const torch::Dtype w = linear_1->weight.scalar_type();
  torch::Tensor h = linear_1(patches.to(w));
  h = two_layers ? linear_2(torch::gelu(h)) : h;  // nn.GELU(): the exact (erf) form
  return h.to(patches.scalar_type());
}

// ---- LLaMA ----

RmsNormImpl::RmsNormImpl(int64_t dim, double e) : eps(e) { weight = register_parameter("weight", torch::ones({dim})); }

torch::Tensor RmsNormImpl::forward(const torch::Tensor& x) {
  // A decoding step's few rows on a GPU: one-pass kernel (fast_linear.h), rounded once as at::rms_norm rounds.
  if (auto y = fast_rms_norm(x, weight, eps)) return *y;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
  // One fused kernel (forward and backward) from LibTorch 2.8. It also computes in float32 but rounds once, after
  // the weight, where LlamaRMSNorm rounds before it: identical in float32, within bf16's rounding otherwise.
  if (x.is_cuda()) return at::rms_norm(x, {weight.size(0)}, weight, eps);
#endif
  // LlamaRMSNorm: in float32, then back to the input dtype before the weight.
  torch::Tensor xf = x.to(torch::kFloat32);
  xf = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * xf.to(x.scalar_type());
}

namespace {
torch::Tensor default_inv_freq(double base, int64_t dim) {
  return 1.0 / torch::pow(base, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<double>(dim));
}
}  // namespace

Rope::Rope(const TextConfig& c) : c_(c) {
  const int64_t dim = c.head_dim;
  const auto& r = c.rope;
  inv_freq_ = default_inv_freq(r.theta, dim);
  if (r.type == "linear") {
    inv_freq_ = inv_freq_ / r.factor;
  } else if (r.type == "llama3") {
    const double old_len = static_cast<double>(r.original_max_position_embeddings > 0 ? r.original_max_position_embeddings
                                                                                      : c.max_position_embeddings);
    const double low_wavelen = old_len / r.low_freq_factor, high_wavelen = old_len / r.high_freq_factor;
    torch::Tensor wavelen = 2 * M_PI / inv_freq_;
    torch::Tensor scaled = torch::where(wavelen > low_wavelen, inv_freq_ / r.factor, inv_freq_);
    torch::Tensor smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    torch::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    torch::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    inv_freq_ = torch::where(medium, smoothed, scaled);
  } else if (r.type == "yarn") {
    const double base = r.theta, factor = r.factor;
    const double orig = static_cast<double>(r.original_max_position_embeddings > 0 ? r.original_max_position_embeddings
                                                                                   : c.max_position_embeddings);
    auto mscale = [](double scale) { return scale <= 1 ? 1.0 : 0.1 * std::log(scale) + 1.0; };
    attention_scaling_ = r.attention_factor > 0 ? r.attention_factor : mscale(factor);
    auto correction_dim = [&](double rotations) {
      return (dim * std::log(orig / (rotations * 2 * M_PI))) / (2 * std::log(base));
    };
    double low = std::max(std::floor(correction_dim(r.beta_fast)), 0.0);
    double high = std::min(std::ceil(correction_dim(r.beta_slow)), static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    torch::Tensor ramp = ((torch::arange(dim / 2, torch::kFloat32) - low) / (high - low)).clamp(0, 1);
    torch::Tensor extrapolation_factor = 1 - ramp;
    torch::Tensor pos_freqs = torch::pow(base, torch::arange(0, dim, 2, torch::kInt64).to(torch::kFloat32) / double(dim));
    inv_freq_ = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_factor) + (1.0 / pos_freqs) * extrapolation_factor;
  }
}

torch::Tensor Rope::inv_freq_for(int64_t seq_len) const {
  // Dynamic NTK scaling: the base grows once the sequence outruns the trained length.
  const int64_t max_pos = c_.rope.original_max_position_embeddings > 0 ? c_.rope.original_max_position_embeddings
                                                                         : c_.max_position_embeddings;
  if (c_.rope.type != "dynamic" || seq_len <= max_pos) return inv_freq_;
  const double dim = static_cast<double>(c_.head_dim);
  const double base = c_.rope.theta * std::pow((c_.rope.factor * seq_len / max_pos) - (c_.rope.factor - 1), dim / (dim - 2));
  return default_inv_freq(base, c_.head_dim);
}

std::pair<torch::Tensor, torch::Tensor> Rope::compute(const torch::Tensor& positions, const torch::Tensor& inv,
                                                      torch::Dtype dtype) const {
  // (..., T, 1) x (E/2) in float32, as LlamaRotaryEmbedding does (autocast disabled).
  torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv.to(positions.device());
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  torch::Tensor sin = (emb.sin() * attention_scaling_).to(dtype);
  const int64_t half = sin.size(-1) / 2;
  sin.narrow(-1, 0, half).neg_();  // see apply_rope
  return {(emb.cos() * attention_scaling_).to(dtype), sin};
}

const void* Rope::reserve(int64_t n, torch::Dtype dtype, const torch::Device& device) const {
  // "cuda" names the current GPU, which a tensor's device ("cuda:0") then names by index.
  const bool same_device = cos_table_.defined() && cos_table_.device().type() == device.type() &&
                           (!device.has_index() || cos_table_.device().index() == device.index());
  if (same_device && cos_table_.size(0) >= n && cos_table_.scalar_type() == dtype) return cos_table_.data_ptr();
  n = std::max(n, c_.max_position_embeddings);
  std::tie(cos_table_, sin_table_) =
      compute(torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(device)), inv_freq_, dtype);
  return cos_table_.data_ptr();
}

std::pair<torch::Tensor, torch::Tensor> Rope::cos_sin(const torch::Tensor& position_ids, torch::Dtype dtype,
                                                      int64_t max_positions) const {
  if (c_.rope.type == "dynamic") {  // the frequencies depend on the longest position: read it
    const int64_t seq_len = position_ids.numel() ? position_ids.max().item<int64_t>() + 1 : 0;
    return compute(position_ids, inv_freq_for(seq_len), dtype);
  }
  // Rows of a table: each element is computed by the same float32 operations as above, so the values are the
  // same bits; indexing needs no host-side maximum (a decoding step captured as a CUDA graph reads none).
  reserve(max_positions, dtype, position_ids.device());
  const torch::Tensor flat = position_ids.reshape({-1});
  auto shape = position_ids.sizes().vec();
  shape.push_back(c_.head_dim);
  return {cos_table_.index_select(0, flat).view(shape), sin_table_.index_select(0, flat).view(shape)};
}

namespace {
// LlamaRotaryEmbedding's x·cos + rotate_half(x)·sin, with rotate_half(x) = cat(-x₂, x₁). `sin` comes with its first
// half negated (Rope::cos_sin), so the product is cat(x₂, x₁)·sin: the same products (negation is exact), from one
// flip instead of a negation and a concatenation. x (B, T, heads, E), cos and sin (B, T, E).
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (auto fused = fast_rope(x, cos, sin)) return *fused;  // a prefill on a GPU: the same bits in one kernel
  auto halves = x.sizes().vec();
  halves.back() /= 2;
  halves.insert(halves.end() - 1, 2);
  const torch::Tensor swapped = x.reshape(halves).flip(-2).reshape(x.sizes());
  return x * cos.unsqueeze(2) + swapped * sin.unsqueeze(2);
}
}  // namespace

LlamaLayerImpl::LlamaLayerImpl(const TextConfig& c)
    : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads), head_dim(c.head_dim) {
  const int64_t d = c.hidden_size;
  input_layernorm = register_module("input_layernorm", RmsNorm(d, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(d, c.rms_norm_eps));
  q_proj = register_module("q_proj", LoraLinear(d, heads * head_dim, c.attention_bias));
  k_proj = register_module("k_proj", LoraLinear(d, kv_heads * head_dim, c.attention_bias));
  v_proj = register_module("v_proj", LoraLinear(d, kv_heads * head_dim, c.attention_bias));
  o_proj = register_module("o_proj", LoraLinear(heads * head_dim, d, c.attention_bias));
  gate_proj = register_module("gate_proj", LoraLinear(d, c.intermediate_size, c.mlp_bias));
  up_proj = register_module("up_proj", LoraLinear(d, c.intermediate_size, c.mlp_bias));
  down_proj = register_module("down_proj", LoraLinear(c.intermediate_size, d, c.mlp_bias));
}

namespace {
// Whether the projections' weights are views of consecutive rows of `packed`, as pack_projections left them.
bool views_packed(const torch::Tensor& packed, std::initializer_list<LoraLinear> parts) {
  if (!packed.defined()) return false;
  int64_t row = 0;
  for (const auto& p : parts) {
    if (p->weight.data_ptr() != static_cast<char*>(packed.data_ptr()) + row * packed.stride(0) * packed.element_size())
      return false;
    row += p->weight.size(0);
  }
  return true;
}

// A packed weight forward may use: the parameters still view it, and none adds a LoRA branch.
bool packed_usable(const torch::Tensor& packed, std::initializer_list<LoraLinear> parts) {
  for (const auto& p : parts)
    if (p->lora_active()) return false;
  return views_packed(packed, parts);
}

// Packs the projections' weights into one tensor their parameters then view (unless they already do); biased
// projections stay separate (LLaVA has none). True when it packed: the weights moved.
bool pack(torch::Tensor& packed, std::initializer_list<LoraLinear> parts) {
  std::vector<torch::Tensor> weights;
  for (const auto& p : parts) {
    if (p->bias.defined()) return false;
    weights.push_back(p->weight);
  }
  if (views_packed(packed, parts)) return false;
  packed = torch::cat(weights, 0);
  int64_t row = 0;
  for (const auto& p : parts) {
    const int64_t n = p->weight.size(0);
    p->weight.set_data(packed.narrow(0, row, n));  // the parameter now views the packed rows
    row += n;
  }
  return true;
}
}  // namespace

bool LlamaLayerImpl::pack_projections() {
  torch::NoGradGuard no_grad;
  const bool qkv = pack(qkv_weight, {q_proj, k_proj, v_proj});
  const bool gate_up = pack(gate_up_weight, {gate_proj, up_proj});
  return qkv || gate_up;
}

LlamaLayerImpl::Projected LlamaLayerImpl::project_qkv(const torch::Tensor& h) {
  const int64_t b = h.size(0), t = h.size(1);
  auto split = [&](const torch::Tensor& x, int64_t n) { return x.view({b, t, n, head_dim}); };  // (B, T, n, E)
  if (!packed_usable(qkv_weight, {q_proj, k_proj, v_proj}))
    return {torch::Tensor(), split(q_proj(h), heads), split(k_proj(h), kv_heads), split(v_proj(h), kv_heads)};
  const torch::Tensor qkv = F::linear(h, qkv_weight);
  const int64_t nq = heads * head_dim, nk = kv_heads * head_dim;
  return {split(qkv.narrow(-1, 0, nq + nk), heads + kv_heads), torch::Tensor(), torch::Tensor(),
          split(qkv.narrow(-1, nq + nk, nk), kv_heads)};
}

torch::Tensor LlamaLayerImpl::mlp(const torch::Tensor& h, const torch::Tensor& x) {
  if (!packed_usable(gate_up_weight, {gate_proj, up_proj}))
    return down_proj->forward_add(torch::silu(gate_proj(h)) * up_proj(h), x);
  // A decoding step on a GPU: both projections and silu · up in one kernel (fast_linear.h).
  if (auto a = fast_silu_mul(h, gate_up_weight)) return down_proj->forward_add(*a, x);
  const torch::Tensor gu = F::linear(h, gate_up_weight);
  if (auto a = fast_silu_mul_rows(gu)) return down_proj->forward_add(*a, x);  // a prefill on a GPU
  const int64_t n = gate_proj->out_features;
  return down_proj->forward_add(torch::silu(gu.narrow(-1, 0, n)) * gu.narrow(-1, n, n), x);
}

namespace {

// softmax(q kᵀ · E^-½ + mask) v: queries (B, H, T, E), keys and values (B, K, S, E), mask (B, 1, T, S) additive,
// unused with `causal`.
torch::Tensor attention(const torch::Tensor& q, torch::Tensor k, torch::Tensor v, const torch::Tensor& mask,
                        bool causal) {
  const int64_t heads = q.size(1), kv_heads = k.size(1);
#ifdef MMR_HAS_SDPA
  // HF's "sdpa" attention. The mask stays additive with a finite minimum, as HF's: a left-padding query row that
  // sees no key then averages instead of giving NaN that would reach the real rows through the cache.
  std::optional<torch::Tensor> m;
  if (!causal) m = mask;
#ifdef MMR_HAS_SDPA_GQA
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, causal, std::nullopt, /*enable_gqa=*/kv_heads != heads);
#else
  if (kv_heads != heads) {
    k = k.repeat_interleave(heads / kv_heads, 1);
    v = v.repeat_interleave(heads / kv_heads, 1);
  }
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, causal);
#endif
#else
  MMR_CHECK(!causal, "causal attention without a mask needs LibTorch 2");
  if (kv_heads != heads) {  // grouped-query attention: each key/value head serves heads/kv_heads query heads
    k = k.repeat_interleave(heads / kv_heads, 1);
    v = v.repeat_interleave(heads / kv_heads, 1);
  }
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2)) * std::pow(static_cast<double>(q.size(-1)), -0.5);
  scores = scores + mask;  // (B, H, T, S) + (B, 1, T, S)
  torch::Tensor attn = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  return torch::matmul(attn, v);
#endif
}

// Keys/values of this step into the cache; returns the keys and values to attend to.
std::pair<torch::Tensor, torch::Tensor> update_cache(LayerCache& cache, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  if (cache.write_at.defined()) {  // slot on the device (a graph-captured step)
    cache.k.index_copy_(2, cache.write_at, k);
    cache.v.index_copy_(2, cache.write_at, v);
    return {cache.k.narrow(2, 0, cache.span), cache.v.narrow(2, 0, cache.span)};
  }
  MMR_CHECK(cache.length + t <= cache.k.size(2), "KV cache overflow");
  cache.k.narrow(2, cache.length, t).copy_(k);
  cache.v.narrow(2, cache.length, t).copy_(v);
  cache.length += t;
  return {cache.k.narrow(2, 0, cache.length), cache.v.narrow(2, 0, cache.length)};
}

}  // namespace

torch::Tensor LlamaLayerImpl::attend(const Projected& p, const torch::Tensor& cos, const torch::Tensor& sin,
                                     const torch::Tensor& mask, LayerCache* cache, bool causal) {
  const int64_t b = p.v.size(0), t = p.v.size(1);
  torch::Tensor q, k;
  if (p.qk.defined()) {  // packed: q and k side by side, rotated together
    const torch::Tensor qk = apply_rope(p.qk, cos, sin);
    q = qk.narrow(2, 0, heads);
    k = qk.narrow(2, heads, kv_heads);
  } else {
    q = apply_rope(p.q, cos, sin);
    k = apply_rope(p.k, cos, sin);
  }
  q = q.transpose(1, 2);                 // (B, H, T, E)
  k = k.transpose(1, 2);                 // (B, K, T, E)
  torch::Tensor v = p.v.transpose(1, 2);
  if (cache) std::tie(k, v) = update_cache(*cache, k, v);
  return attention(q, k, v, mask, causal).transpose(1, 2).reshape({b, t, heads * head_dim});
}

torch::Tensor LlamaLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                      const torch::Tensor& mask, LayerCache* cache, bool causal) {
  const Projected p = project_qkv(input_layernorm(x));
  // A decoding step with its cache slot on the device, on a GPU in bf16: RoPE, the cache write and attention in
  // one kernel of ours (fast_linear.h); anything else, or where the kernel does not apply, the ATen ops.
  std::optional<torch::Tensor> fused;
  if (cache && cache->write_at.defined() && x.size(1) == 1 && p.qk.defined())
    fused = fast_decode_attention(p.qk, p.v, cos, sin, mask, cache->k, cache->v, cache->write_at, cache->span);
  const torch::Tensor o = fused ? *fused : attend(p, cos, sin, mask, cache, causal);
  const torch::Tensor x1 = o_proj->forward_add(o, x);
  return mlp(post_attention_layernorm(x1), x1);
}

LlamaImpl::LlamaImpl(const TextConfig& c) : config(c), rope(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(LlamaLayer(c));
  norm = register_module("norm", RmsNorm(c.hidden_size, c.rms_norm_eps));
  lm_head = c.tie_word_embeddings ? embed_tokens->weight
                                  : register_parameter("lm_head", torch::empty({c.vocab_size, c.hidden_size}), false);
}

// ---- activation recomputation ----

namespace {

// The RNG state a layer's forward may draw from (LoRA dropout), so the recomputation draws the same masks.
struct RngSnapshot {
  torch::Tensor cpu, device;  // the generators' state tensors
  torch::Device where{torch::kCPU};
  static RngSnapshot take(const torch::Device& d) {
    RngSnapshot s;
    s.where = d;
    s.cpu = at::detail::getDefaultCPUGenerator().get_state();
    if (d.is_cuda()) s.device = at::globalContext().defaultGenerator(d).get_state();
    return s;
  }
  void restore() const {
    at::Generator(at::detail::getDefaultCPUGenerator()).set_state(cpu);
    if (device.defined()) at::Generator(at::globalContext().defaultGenerator(where)).set_state(device);
  }
};

// One decoder layer as a single autograd node that keeps only its inputs: the backward runs the layer's forward
// again under grad mode and differentiates that (what torch.utils.checkpoint does, which LibTorch lacks). The
// layer's trainable parameters are inputs of the node, so their gradients are returned through it.
struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin, const torch::Tensor& mask, LlamaLayerImpl* layer, bool causal,
                               at::TensorList params) {
    const RngSnapshot rng = RngSnapshot::take(x.device());
    ctx->saved_data["rng_cpu"] = rng.cpu;
    if (rng.device.defined()) ctx->saved_data["rng_device"] = rng.device;
    ctx->saved_data["layer"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(layer));
    ctx->saved_data["x_requires_grad"] = x.requires_grad();
    ctx->saved_data["causal"] = causal;
    std::vector<torch::Tensor> keep = {x, cos, sin, mask};
    keep.insert(keep.end(), params.begin(), params.end());
    ctx->save_for_backward(keep);
    torch::NoGradGuard no_grad;
    return layer->forward(x, cos, sin, mask, nullptr, causal);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<LlamaLayerImpl*>(static_cast<intptr_t>(ctx->saved_data["layer"].toInt()));
    const bool x_grad = ctx->saved_data["x_requires_grad"].toBool();
    torch::Tensor x = saved[0].detach().requires_grad_(x_grad);
    std::vector<torch::Tensor> params(saved.begin() + 4, saved.end());

    RngSnapshot then;
    then.where = x.device();
    then.cpu = ctx->saved_data["rng_cpu"].toTensor();
    if (ctx->saved_data.count("rng_device")) then.device = ctx->saved_data["rng_device"].toTensor();
    const RngSnapshot now = RngSnapshot::take(x.device());
    then.restore();
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      y = layer->forward(x, saved[1], saved[2], saved[3], nullptr, ctx->saved_data["causal"].toBool());
    }
    now.restore();

    std::vector<torch::Tensor> wrt;
    if (x_grad) wrt.push_back(x);
    wrt.insert(wrt.end(), params.begin(), params.end());
    torch::autograd::variable_list grads =
        torch::autograd::grad({y}, wrt, {grad_out[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
    torch::autograd::variable_list out = {x_grad ? grads[0] : torch::Tensor(), torch::Tensor(), torch::Tensor(),
                                          torch::Tensor(), torch::Tensor(), torch::Tensor()};
    out.insert(out.end(), grads.begin() + (x_grad ? 1 : 0), grads.end());
    return out;
  }
};

}  // namespace

torch::Tensor checkpointed_layer_forward(LlamaLayerImpl& layer, const torch::Tensor& x, const torch::Tensor& cos,
                                         const torch::Tensor& sin, const torch::Tensor& mask, bool causal) {
  std::vector<torch::Tensor> params;
  for (const auto& p : layer.parameters())
    if (p.requires_grad()) params.push_back(p);
  if (!x.requires_grad() && params.empty()) return layer.forward(x, cos, sin, mask, nullptr, causal);
  return CheckpointedLayer::apply(x, cos, sin, mask, &layer, causal, at::TensorList(params));
}

namespace {
// Additive mask (B, 1, T, S): key j is visible to query i when j <= past + i and j is not padding; hidden keys get
// the dtype's minimum, as HF's.
torch::Tensor additive_mask(const torch::Tensor& attention_mask, int64_t t, torch::Dtype dtype) {
  const int64_t s = attention_mask.size(1), past = s - t;
  const auto dev = attention_mask.device();
  torch::Tensor qpos = torch::arange(past, past + t, torch::TensorOptions().dtype(torch::kInt64).device(dev)).view({t, 1});
  torch::Tensor kpos = torch::arange(s, torch::TensorOptions().dtype(torch::kInt64).device(dev)).view({1, s});
  torch::Tensor visible = (kpos <= qpos).unsqueeze(0) & attention_mask.to(torch::kBool).unsqueeze(1);  // (B, T, S)
  return additive_mask_of(visible, dtype);
}
}  // namespace

torch::Tensor additive_mask_of(const torch::Tensor& visible, torch::Dtype dtype) {
  const double min_value = dtype == torch::kFloat16 ? -65504.0
                           : dtype == torch::kFloat32 ? std::numeric_limits<float>::lowest() : -3.0e38;
  return torch::zeros(visible.sizes(), torch::TensorOptions().dtype(dtype).device(visible.device()))
      .masked_fill(visible.logical_not(), min_value)
      .unsqueeze(1);
}

torch::Tensor LlamaImpl::forward(const torch::Tensor& embeds, const torch::Tensor& attention_mask,
                                 const torch::Tensor& position_ids, std::vector<LayerCache>* caches, bool causal_only) {
#ifdef MMR_HAS_SDPA
  const bool causal = causal_only && embeds.size(1) == attention_mask.size(1);  // and nothing cached before
#else
  const bool causal = false;
#endif
  // With `causal` the mask is an empty tensor, never read (defined: the recomputing autograd node saves it).
  const torch::Tensor mask = causal ? torch::empty({0}, embeds.options())
                                    : additive_mask(attention_mask, embeds.size(1), embeds.scalar_type());
  return run_layers(embeds, mask, position_ids, attention_mask.size(1), caches, causal);
}

torch::Tensor LlamaImpl::forward_masked(const torch::Tensor& embeds, const torch::Tensor& mask,
                                        const torch::Tensor& position_ids) {
  return run_layers(embeds, mask, position_ids, mask.size(-1), nullptr, false);
}

torch::Tensor LlamaImpl::run_layers(const torch::Tensor& embeds, const torch::Tensor& mask,
                                    const torch::Tensor& position_ids, int64_t max_positions,
                                    std::vector<LayerCache>* caches, bool causal) {
  auto [cos, sin] = rope.cos_sin(position_ids, embeds.scalar_type(), max_positions);
  torch::Tensor x = embeds;
  const bool recompute = checkpoint_layers && !caches && is_training() && torch::GradMode::is_enabled();
  for (size_t i = 0; i < layers->size(); ++i) {
    LlamaLayerImpl* layer = layers[i]->as<LlamaLayer>();
    x = recompute ? checkpointed_layer_forward(*layer, x, cos, sin, mask, causal)
                  : layer->forward(x, cos, sin, mask, caches ? &(*caches)[i] : nullptr, causal);
  }
  return norm(x);
}

torch::Tensor LlamaImpl::lm_head_forward(const torch::Tensor& hidden) { return F::linear(hidden, lm_head); }

std::vector<std::pair<std::string, LoraLinear>> lora_targets(Llama& llama) {
  std::vector<std::pair<std::string, LoraLinear>> out;
  for (size_t i = 0; i < llama->layers->size(); ++i) {
    auto layer = llama->layers[i]->as<LlamaLayer>();
    const std::string p = "layers." + std::to_string(i) + ".";
    out.emplace_back(p + "self_attn.q_proj", layer->q_proj);
    out.emplace_back(p + "self_attn.k_proj", layer->k_proj);
    out.emplace_back(p + "self_attn.v_proj", layer->v_proj);
    out.emplace_back(p + "self_attn.o_proj", layer->o_proj);
    out.emplace_back(p + "mlp.gate_proj", layer->gate_proj);
    out.emplace_back(p + "mlp.up_proj", layer->up_proj);
    out.emplace_back(p + "mlp.down_proj", layer->down_proj);
  }
  return out;
}

}  // namespace mmr::llava
