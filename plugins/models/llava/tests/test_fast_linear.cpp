// The decoding step's kernels (fast_linear.h): where they apply, and on a GPU their results against float32
// references made from the same bf16 inputs. The GPU tests skip without CUDA; the CPU build checks that nothing
// changes there.
#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "device_steps.h"
#include "fast_linear.h"
#include "modules.h"

using mmr::llava::fast_linear;
using mmr::llava::fast_rms_norm;
using mmr::llava::fast_silu_mul;

namespace {

torch::Tensor randn_bf16(std::vector<int64_t> shape, const torch::Device& d, double scale = 1.0) {
  return (torch::randn(shape, torch::TensorOptions().dtype(torch::kFloat32)) * scale).to(d, torch::kBFloat16);
}

// Largest |a - b| relative to max |b|.
double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor af = a.to(torch::kCPU, torch::kFloat64), bf = b.to(torch::kCPU, torch::kFloat64);
  return (af - bf).abs().max().item<double>() / bf.abs().max().item<double>();
}

// bf16 keeps 8 significant bits: a correctly rounded output is within 2^-9 of the exact value, relative; the
// float32 sums in another order add far less. A wrong row, chunk or epilogue gives errors of order 1.
constexpr double kOneRounding = 1.0 / 256;

#define SKIP_WITHOUT_CUDA()                                         \
  if (!torch::cuda::is_available() || !mmr::llava::fast_kernels_built()) \
  GTEST_SKIP() << "no CUDA device, or a build without the kernels"

// A two-layer LLaMA (GQA 4/2 heads, head size 128) with random weights in bf16 on `d`, its projections packed as
// generate() packs them.
mmr::llava::Llama two_layer_llama(const torch::Device& d) {
  mmr::llava::TextConfig c;
  c.hidden_size = 512, c.intermediate_size = 1024, c.num_hidden_layers = 2, c.num_attention_heads = 4;
  c.num_key_value_heads = 2, c.head_dim = 128, c.vocab_size = 100, c.max_position_embeddings = 512;
  mmr::llava::Llama llama(c);
  for (auto& p : llama->parameters()) p.normal_(0, 0.05);
  llama->to(d, torch::kBFloat16);
  llama->eval();
  for (auto& layer : *llama->layers) layer->as<mmr::llava::LlamaLayer>()->pack_projections();
  return llama;
}

}  // namespace

TEST(FastLinear, CpuFloat32TrainingAndWideBatchesKeepTheAtenPath) {
  torch::NoGradGuard no_grad;
  const torch::Device cpu(torch::kCPU);
  EXPECT_FALSE(fast_linear(randn_bf16({1, 64}, cpu), randn_bf16({32, 64}, cpu)).has_value());
  EXPECT_FALSE(fast_rms_norm(randn_bf16({1, 64}, cpu), randn_bf16({64}, cpu), 1e-5).has_value());
  if (!torch::cuda::is_available() || !mmr::llava::fast_kernels_built()) return;
  const torch::Device gpu(torch::kCUDA);
  const torch::Tensor w = randn_bf16({32, 64}, gpu);
  EXPECT_FALSE(fast_linear(torch::randn({1, 64}, gpu), w.to(torch::kFloat32)).has_value()) << "float32";
  EXPECT_FALSE(fast_linear(randn_bf16({9, 64}, gpu), w).has_value()) << "more than 8 rows";
  EXPECT_FALSE(fast_rms_norm(randn_bf16({9, 64}, gpu), randn_bf16({64}, gpu), 1e-5).has_value()) << "norm, 9 rows";
  EXPECT_FALSE(fast_linear(randn_bf16({1, 60}, gpu), randn_bf16({32, 60}, gpu)).has_value()) << "K not a multiple of 8";
  {
    torch::AutoGradMode grad(true);
    EXPECT_FALSE(fast_linear(randn_bf16({1, 64}, gpu), w).has_value()) << "autograd on";
  }
  EXPECT_TRUE(fast_linear(randn_bf16({1, 64}, gpu), w).has_value()) << "a decoding step's shape (MMR_GEMV=0 set?)";
}

TEST(FastLinear, ProductsAndResidualMatchFloat32OnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(1);
  const torch::Device gpu(torch::kCUDA);
  // K: whole 32-value slabs, a partial slab (264 = 8·33), a 13B width; N: a partial last block of columns.
  for (int64_t k : {96, 264, 5120})
    for (int64_t n : {8, 100})
      for (int64_t m : {1, 3, 8}) {
        const torch::Tensor x = randn_bf16({m, 1, k}, gpu), w = randn_bf16({n, k}, gpu, 1.0 / std::sqrt(k));
        const torch::Tensor r = randn_bf16({m, 1, n}, gpu);
        const torch::Tensor exact = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
        const auto y = fast_linear(x, w);
        ASSERT_TRUE(y.has_value());
        EXPECT_EQ(y->sizes(), torch::IntArrayRef({m, 1, n}));
        EXPECT_LE(max_rel(*y, exact), kOneRounding) << "m=" << m << " k=" << k << " n=" << n;
        const auto yr = fast_linear(x, w, r);
        ASSERT_TRUE(yr.has_value());
        EXPECT_LE(max_rel(*yr, exact + r.to(torch::kFloat64)), kOneRounding) << "residual, m=" << m << " k=" << k;
      }
}

TEST(FastLinear, SiluTimesUpMatchesTheUnfusedOpsOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  const torch::Device gpu(torch::kCUDA);
  const int64_t k = 264, inner = 52;  // 52 = 13 blocks of 4 columns
  for (int64_t m : {1, 8}) {
    const torch::Tensor x = randn_bf16({m, k}, gpu), w = randn_bf16({2 * inner, k}, gpu, 3.0 / std::sqrt(k));
    const torch::Tensor gu = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
    const torch::Tensor gate = gu.narrow(1, 0, inner), up = gu.narrow(1, inner, inner);
    const torch::Tensor exact = gate * torch::sigmoid(gate) * up;
    const auto y = fast_silu_mul(x, w);
    ASSERT_TRUE(y.has_value());
    EXPECT_EQ(y->sizes(), torch::IntArrayRef({m, inner}));
    // Rounded where silu(gate) * up rounds in bf16: gate, up, silu and the product, each once.
    EXPECT_LE(max_rel(*y, exact), 4 * kOneRounding) << "m=" << m;
  }
}

// The GEMV's block shapes (gemv.cu: 8 or 16 rows a block, one block per tile or persistent blocks, weights
// through registers or staged through shared memory) all give the same bits: they split k over the same warps in the same order. So does the one timed on the card (the default,
// first call of each shape). 5,000 tiles are more than blocks fit on any card, so a persistent block takes several,
// loading its next tile's weights during the current one's reduction. All match the float32 references.
TEST(FastLinear, EveryGemvBlockShapeGivesTheSameBits) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const torch::Device gpu(torch::kCUDA);
  for (const auto& [k, n] : std::vector<std::pair<int64_t, int64_t>>{{264, 40000}, {5120, 100}, {5120, 1000}})
    for (int64_t m : {1, 3, 8}) {
      const torch::Tensor x = randn_bf16({m, k}, gpu), w = randn_bf16({n, k}, gpu, 1.0 / std::sqrt(k));
      const torch::Tensor r = randn_bf16({m, n}, gpu);
      auto products = [&] {
        return std::array<torch::Tensor, 3>{fast_linear(x, w).value(), fast_linear(x, w, r).value(),
                                            fast_silu_mul(x, w).value()};
      };
      const auto tuned = products();
      const std::string where = "m=" + std::to_string(m) + " k=" + std::to_string(k) + " n=" + std::to_string(n);
      for (const char* config : {"t1", "t1p", "t2", "t2p", "t1s", "t1sp", "t2s", "t2sp"}) {
        setenv("MMR_GEMV_CONFIG", config, 1);
        const auto forced = products();
        unsetenv("MMR_GEMV_CONFIG");
        for (size_t i = 0; i < 3; ++i)
          EXPECT_TRUE(torch::equal(forced[i], tuned[i])) << config << ", product " << i << ", " << where;
      }
      const torch::Tensor gu = torch::matmul(x.to(torch::kFloat64), w.to(torch::kFloat64).t());
      EXPECT_LE(max_rel(tuned[0], gu), kOneRounding) << where;
      EXPECT_LE(max_rel(tuned[1], gu + r.to(torch::kFloat64)), kOneRounding) << where;
      const torch::Tensor gate = gu.narrow(1, 0, n / 2), up = gu.narrow(1, n / 2, n / 2);
      EXPECT_LE(max_rel(tuned[2], gate * torch::sigmoid(gate) * up), 4 * kOneRounding) << where;
    }
  // Each shape above was timed once, at its first call: the report has a line for each (three products a shape).
  const std::string report = mmr::llava::gemv_tuning_report();
  EXPECT_NE(report.find("m=3 k=5120 n=1000 residual: t"), std::string::npos) << report;
  EXPECT_NE(report.find("m=8 k=264 n=20000 silu_mul: t"), std::string::npos) << report;
}

TEST(FastLinear, ReplaysInsideACudaGraphAfterTheKernelThatWritesItsInput) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(4);
  const torch::Device gpu(torch::kCUDA);
  const torch::Tensor src = randn_bf16({2, 512}, gpu), x = torch::empty_like(src), w = randn_bf16({1024, 512}, gpu);
  // The product starts (programmatic dependent launch) while the copy that writes x may still run.
  auto step = [&] {
    x.copy_(src * 2);
    return fast_linear(x, w).value();
  };
  const torch::Tensor eager = step().clone();
  mmr::llava::StepGraphs graphs(gpu, /*allowed=*/true);
  ASSERT_TRUE(graphs.enabled()) << "MMR_CUDA_GRAPHS=0 set?";
  for (int i = 0; i < 3; ++i) {
    src.mul_(-1);  // new input each replay: a product that read x before the copy would keep the old sign
    const torch::Tensor replayed = graphs.run(/*key=*/0, step).clone();
    EXPECT_TRUE(torch::equal(replayed, i % 2 == 0 ? -eager : eager)) << "replay " << i;
  }
}

TEST(FastLinear, RmsNormMatchesFloat32OnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const torch::Device gpu(torch::kCUDA);
  const double eps = 1e-5;
  // Widths: below one pass of the block, a 13B width (one pass), and the 13B MLP width (several).
  for (int64_t k : {96, 5120, 13824})
    for (int64_t m : {1, 8}) {
      const torch::Tensor x = randn_bf16({m, 1, k}, gpu, 3.0), weight = randn_bf16({k}, gpu);
      const torch::Tensor xd = x.to(torch::kFloat64);
      const torch::Tensor exact = xd * torch::rsqrt(xd.pow(2).mean(-1, true) + eps) * weight.to(torch::kFloat64);
      const auto y = fast_rms_norm(x, weight, eps);
      ASSERT_TRUE(y.has_value());
      EXPECT_EQ(y->sizes(), x.sizes());
      EXPECT_LE(max_rel(*y, exact), kOneRounding) << "m=" << m << " k=" << k;
    }
}

namespace {

using mmr::llava::fast_decode_attention;

// apply_rope of modules.cpp as ATen computes it in bf16: x·cos + cat(x₂, x₁)·sin, sin's first half negated.
torch::Tensor rope_reference(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t e = x.size(-1);
  const torch::Tensor swapped = torch::cat({x.narrow(-1, e / 2, e / 2), x.narrow(-1, 0, e / 2)}, -1);
  return x * cos.unsqueeze(2) + swapped * sin.unsqueeze(2);
}

// softmax(q kᵀ/√E + mask) v in float64 over the visible slots; q (B, H, E), caches (B, K, C, E), visible (B, S).
torch::Tensor attention_reference(const torch::Tensor& q, const torch::Tensor& k_cache, const torch::Tensor& v_cache,
                                  const torch::Tensor& visible, int64_t span) {
  const int64_t group = q.size(1) / k_cache.size(1);
  auto slots = [&](const torch::Tensor& c) {
    const torch::Tensor s = c.narrow(2, 0, span).to(torch::kFloat64).repeat_interleave(group, 1);
    return torch::where(visible.view({visible.size(0), 1, span, 1}), s, torch::zeros_like(s));  // hidden: NaN there
  };
  torch::Tensor scores = torch::matmul(q.to(torch::kFloat64).unsqueeze(2), slots(k_cache).transpose(-1, -2)) /
                         std::sqrt(static_cast<double>(q.size(-1)));
  scores = scores.masked_fill(visible.logical_not().view({visible.size(0), 1, 1, span}), -INFINITY);
  return torch::matmul(torch::softmax(scores, -1), slots(v_cache)).squeeze(2);  // (B, H, E)
}

}  // namespace

// The kernels against the unfused ops on shaped inputs: the rotated key and the value written at the slot (bit for
// bit), every other slot untouched, and the attention within bf16 rounding of float64, while the hidden slots
// (left padding, slots after this step's) hold NaN, which must not be read. Then the same kernels replayed as a
// CUDA graph with the next slot: the slot is read on the device.
TEST(FastDecodeAttention, RotatesWritesAndAttendsAsTheUnfusedOpsOnTheGpu) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(6);
  const torch::Device gpu(torch::kCUDA);
  const int64_t b = 3, e = 128, capacity = 320, span = 256;
  // 4/4 and 8/2 heads: several chunks of keys a head (combined by the block that finishes last); 160/160: enough
  // heads for one chunk each (decode_attention.h, keys_per_chunk), as a 13B step at batch 8 has.
  for (auto [heads, kv_heads] : {std::pair<int64_t, int64_t>{4, 4}, {8, 2}, {160, 160}}) {
    const torch::Tensor qkv = randn_bf16({b, 1, (heads + 2 * kv_heads) * e}, gpu);
    const torch::Tensor qk = qkv.narrow(-1, 0, (heads + kv_heads) * e).view({b, 1, heads + kv_heads, e});
    const torch::Tensor v = qkv.narrow(-1, (heads + kv_heads) * e, kv_heads * e).view({b, 1, kv_heads, e});
    const torch::Tensor angle = torch::randn({b, 1, e / 2}) * 3;
    const torch::Tensor cos = torch::cat({angle.cos(), angle.cos()}, -1).to(gpu, torch::kBFloat16);
    const torch::Tensor sin = torch::cat({-angle.sin(), angle.sin()}, -1).to(gpu, torch::kBFloat16);
    const torch::Tensor write_at = torch::full({1}, 200, torch::TensorOptions().dtype(torch::kInt64).device(gpu));
    // Row 0 sees every slot up to the step's, row 1 has 50 slots of left padding, row 2 a scattered few hidden.
    torch::Tensor visible = torch::arange(span).view({1, span}).le(200).repeat({b, 1});
    visible[1].narrow(0, 0, 50).fill_(false);
    visible[2].index_fill_(0, torch::tensor({3, 64, 65, 127, 199}), false);
    const torch::Tensor mask = torch::zeros({b, 1, 1, span}, torch::kBFloat16)
                                   .masked_fill(visible.logical_not().view({b, 1, 1, span}), -3.0e38)
                                   .to(gpu);
    torch::Tensor k_cache = randn_bf16({b, kv_heads, capacity, e}, gpu), v_cache = randn_bf16({b, kv_heads, capacity, e}, gpu);
    for (int64_t r = 0; r < b; ++r)
      for (int64_t s = 0; s < capacity; ++s)
        if (s >= span || (!visible[r][s].item<bool>() && s != 200)) {
          k_cache[r].select(1, s).fill_(NAN);
          v_cache[r].select(1, s).fill_(NAN);
        }
    const torch::Tensor rotated = rope_reference(qk, cos, sin);  // (B, 1, H + K, E)
    auto step = [&] {
      return fast_decode_attention(qk, v, cos, sin, mask, k_cache, v_cache, write_at, span).value();
    };
    auto check = [&](const torch::Tensor& out, int64_t slot, const torch::Tensor& k_before, const torch::Tensor& v_before) {
      EXPECT_TRUE(torch::equal(k_cache.select(2, slot), rotated.select(1, 0).narrow(1, heads, kv_heads))) << "key";
      EXPECT_TRUE(torch::equal(v_cache.select(2, slot), v.select(1, 0))) << "value";
      const torch::Tensor others = torch::arange(capacity).ne(slot).nonzero().view(-1).to(gpu);
      for (auto [after, before] : {std::pair{k_cache, k_before}, {v_cache, v_before}})
        EXPECT_TRUE(torch::equal(after.index_select(2, others).nan_to_num(), before.index_select(2, others).nan_to_num()))
            << "a slot other than the step's was written";
      torch::Tensor seen = visible.clone();
      seen.select(1, slot).fill_(true);
      const torch::Tensor exact = attention_reference(rotated.select(1, 0).narrow(1, 0, heads), k_cache, v_cache,
                                                      seen.to(gpu), span);
      EXPECT_EQ(out.sizes(), torch::IntArrayRef({b, 1, heads * e}));
      EXPECT_FALSE(out.isnan().any().item<bool>()) << "a hidden slot was read";
      EXPECT_LE(max_rel(out.view({b, heads, e}), exact), 2 * kOneRounding) << "heads " << heads << "/" << kv_heads;
    };
    torch::Tensor k_before = k_cache.clone(), v_before = v_cache.clone();
    check(step(), 200, k_before, v_before);

    mmr::llava::StepGraphs graphs(gpu, /*allowed=*/true);
    ASSERT_TRUE(graphs.enabled());
    graphs.run(/*key=*/span, step);  // captured at slot 200
    write_at.fill_(201);
    visible.select(1, 200).fill_(true);
    mask.select(3, 201).fill_(0);
    k_before = k_cache.clone(), v_before = v_cache.clone();
    check(graphs.run(span, step).clone(), 201, k_before, v_before);
  }
}

// Where the kernels do not apply (a head size other than 128, the CPU), the caller's path runs.
TEST(FastDecodeAttention, OtherShapesAndTheCpuKeepTheAtenPath) {
  torch::NoGradGuard no_grad;
  auto args = [](const torch::Device& d, int64_t e, int64_t heads) {
    const torch::Tensor qkv = randn_bf16({1, 1, 3 * heads * e}, d);
    const torch::Tensor cache = randn_bf16({1, heads, 16, e}, d);
    return std::vector<torch::Tensor>{qkv.narrow(-1, 0, 2 * heads * e).view({1, 1, 2 * heads, e}),
                                      qkv.narrow(-1, 2 * heads * e, heads * e).view({1, 1, heads, e}),
                                      randn_bf16({1, 1, e}, d), randn_bf16({1, 1, e}, d),
                                      torch::zeros({1, 1, 1, 8}, torch::TensorOptions().dtype(torch::kBFloat16).device(d)),
                                      cache, cache.clone(),
                                      torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt64).device(d))};
  };
  auto call = [](const std::vector<torch::Tensor>& a) {
    return fast_decode_attention(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], 8).has_value();
  };
  EXPECT_FALSE(call(args(torch::kCPU, 128, 2)));
  if (!torch::cuda::is_available() || !mmr::llava::fast_kernels_built()) return;
  EXPECT_FALSE(call(args(torch::kCUDA, 64, 2))) << "head size 64";
  EXPECT_TRUE(call(args(torch::kCUDA, 128, 2))) << "a decoding step's shape (MMR_DECODE_ATTENTION=0 set?)";
}

// A decoding step of a two-layer LLaMA (GQA, head size 128) in bf16, as generate() runs it (packed projections,
// the slot on the device, a bucketed span), with the kernels and with MMR_DECODE_ATTENTION=0: the first layer's
// cache writes are the same bits (RoPE rounds as the unfused ops), the hidden states the same up to the attention's
// rounding.
TEST(FastDecodeAttention, ADecodingStepOfALlamaMatchesTheAtenPath) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(7);
  const torch::Device gpu(torch::kCUDA);
  mmr::llava::Llama llama = two_layer_llama(gpu);
  // One row (a view gives a size-1 dimension a stride of its own) in one chunk of keys, then two rows in two chunks
  // (combined by the block that finishes last).
  for (const int64_t b : {1, 2}) {
    const int64_t prompt = 40, capacity = 256, span = b == 1 ? 64 : 128;
    const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(gpu);
    torch::Tensor mask = torch::zeros({b, capacity}, long_opts);
    mask.narrow(1, 0, prompt).fill_(1);
    if (b > 1) mask[1].narrow(0, 0, 9).fill_(0);  // row 1: left padding
    std::vector<mmr::llava::LayerCache> caches(2);
    for (auto& cache : caches) {
      cache.k = torch::zeros({b, 2, capacity, 128}, torch::TensorOptions().dtype(torch::kBFloat16).device(gpu));
      cache.v = torch::zeros_like(cache.k);
    }
    const torch::Tensor positions = (mask.narrow(1, 0, prompt).cumsum(1) - 1).clamp_min(0);
    llama->forward(llama->embed_tokens(torch::randint(100, {b, prompt}, long_opts)), mask.narrow(1, 0, prompt), positions,
                   &caches);
    const torch::Tensor write_at = torch::full({1}, prompt, long_opts);
    mask.select(1, prompt).fill_(1);
    const torch::Tensor embeds = llama->embed_tokens(torch::randint(100, {b, 1}, long_opts));
    const torch::Tensor pos = positions.select(1, prompt - 1).view({b, 1}) + 1;
    auto step = [&](const char* kernels) {
      setenv("MMR_DECODE_ATTENTION", kernels, 1);
      std::vector<mmr::llava::LayerCache> mine = caches;
      for (auto& cache : mine) {
        cache.k = cache.k.clone(), cache.v = cache.v.clone();
        cache.write_at = write_at, cache.span = span;
      }
      const torch::Tensor h = llama->forward(embeds, mask.narrow(1, 0, span), pos, &mine);
      unsetenv("MMR_DECODE_ATTENTION");
      return std::pair{h, mine};
    };
    const auto [fused, fused_caches] = step("1");
    const auto [aten, aten_caches] = step("0");
    EXPECT_TRUE(torch::equal(fused_caches[0].k, aten_caches[0].k)) << "first layer's keys, " << b << " rows";
    EXPECT_TRUE(torch::equal(fused_caches[0].v, aten_caches[0].v)) << "first layer's values";
    EXPECT_FALSE(torch::equal(fused_caches[0].k, caches[0].k)) << "the step wrote no key";
    const double cosine = torch::cosine_similarity(fused.flatten().to(torch::kFloat32), aten.flatten().to(torch::kFloat32), 0)
                              .item<double>();
    EXPECT_GE(cosine, 0.9999);
    EXPECT_FALSE(torch::equal(fused, aten)) << "the kernels did not run: the same bits as ATen's attention";
    EXPECT_LE(max_rel(fused, aten), 4 * kOneRounding);
  }
}

// A prefill's RoPE and silu · up (prefill_ops.cu) against the ATen ops they replace, bit for bit: the same float32
// steps rounded at the same places. Shapes as a packed projection's output gives them (a strided view), an odd
// number of positions, and a case each where they do not apply.
TEST(FastPrefillOps, RopeAndSiluTimesUpGiveTheUnfusedOpsBits) {
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(mmr::llava::fast_silu_mul_rows(randn_bf16({3, 64}, torch::kCPU)).has_value()) << "CPU";
  SKIP_WITHOUT_CUDA();
  torch::manual_seed(8);
  const torch::Device gpu(torch::kCUDA);
  for (const auto& [b, t, heads, kv, e] : std::vector<std::array<int64_t, 5>>{{1, 37, 4, 2, 128}, {3, 5, 2, 2, 32}}) {
    const torch::Tensor qkv = randn_bf16({b, t, (heads + 2 * kv) * e}, gpu, 4.0);
    const torch::Tensor qk = qkv.narrow(-1, 0, (heads + kv) * e).view({b, t, heads + kv, e});
    const torch::Tensor cos = randn_bf16({b, t, e}, gpu), sin = randn_bf16({b, t, e}, gpu);
    const torch::Tensor swapped = qk.reshape({b, t, heads + kv, 2, e / 2}).flip(-2).reshape(qk.sizes());
    const torch::Tensor aten = qk * cos.unsqueeze(2) + swapped * sin.unsqueeze(2);
    const auto fused = mmr::llava::fast_rope(qk, cos, sin);
    ASSERT_TRUE(fused.has_value()) << "a prefill's shape (MMR_PREFILL_OPS=0 set?)";
    EXPECT_TRUE(torch::equal(*fused, aten)) << "b=" << b << " t=" << t << " e=" << e;
  }
  EXPECT_FALSE(mmr::llava::fast_rope(randn_bf16({1, 3, 2, 8}, gpu), randn_bf16({1, 3, 8}, gpu), randn_bf16({1, 3, 8}, gpu))
                   .has_value())
      << "head size 8: not a multiple of 16";
  for (const int64_t m : {1, 9, 700}) {
    const torch::Tensor gu = randn_bf16({m, 3 * 2 * 48}, gpu, 3.0).narrow(-1, 0, 2 * 48);  // rows 288 apart
    const torch::Tensor aten = torch::silu(gu.narrow(-1, 0, 48)) * gu.narrow(-1, 48, 48);
    const auto fused = mmr::llava::fast_silu_mul_rows(gu);
    ASSERT_TRUE(fused.has_value());
    EXPECT_TRUE(torch::equal(*fused, aten)) << "m=" << m;
  }
  torch::AutoGradMode grad(true);
  EXPECT_FALSE(mmr::llava::fast_silu_mul_rows(randn_bf16({9, 96}, gpu)).has_value()) << "autograd on";
}

// A prefill of a two-layer LLaMA in bf16 (packed projections, left padding) with the kernels and with
// MMR_PREFILL_OPS=0: the same bits, in the hidden states and the cache.
TEST(FastPrefillOps, APrefillOfALlamaGivesTheAtenPathsBits) {
  SKIP_WITHOUT_CUDA();
  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  const torch::Device gpu(torch::kCUDA);
  mmr::llava::Llama llama = two_layer_llama(gpu);
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(gpu);
  torch::Tensor mask = torch::ones({2, 41}, long_opts);
  mask[1].narrow(0, 0, 6).fill_(0);
  const torch::Tensor positions = (mask.cumsum(1) - 1).clamp_min(0);
  const torch::Tensor embeds = llama->embed_tokens(torch::randint(100, {2, 41}, long_opts));
  auto prefill = [&](const char* kernels) {
    setenv("MMR_PREFILL_OPS", kernels, 1);
    std::vector<mmr::llava::LayerCache> caches(2);
    for (auto& cache : caches) {
      cache.k = torch::zeros({2, 2, 64, 128}, torch::TensorOptions().dtype(torch::kBFloat16).device(gpu));
      cache.v = torch::zeros_like(cache.k);
    }
    const torch::Tensor h = llama->forward(embeds, mask, positions, &caches);
    unsetenv("MMR_PREFILL_OPS");
    return std::pair{h, caches};
  };
  const int64_t launched = mmr::llava::prefill_ops_launched();
  const auto [fused, fused_caches] = prefill("1");
  EXPECT_EQ(mmr::llava::prefill_ops_launched() - launched, 4) << "RoPE and silu · up in each of 2 layers";
  const auto [aten, aten_caches] = prefill("0");
  EXPECT_TRUE(torch::equal(fused, aten));
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_TRUE(torch::equal(fused_caches[l].k, aten_caches[l].k)) << "layer " << l;
    EXPECT_TRUE(torch::equal(fused_caches[l].v, aten_caches[l].v)) << "layer " << l;
  }
}
