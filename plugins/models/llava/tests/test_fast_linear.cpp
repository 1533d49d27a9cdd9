// The decoding step's kernels (fast_linear.h): where they apply, and on a GPU their results against float32
// references made from the same bf16 inputs. The GPU tests skip without CUDA; the CPU build checks that nothing
// changes there.
#include <gtest/gtest.h>

#include "device_steps.h"
#include "fast_linear.h"

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
