// Each preference loss against values computed by hand from the papers' formulas (Python's math module, written
// out below), and the learning-rate schedules against transformers' definitions.
//
// Pairs used: policy chosen/rejected summed log-probs (-10, -12) and (-20, -18), reference (-11, -11) and
// (-19, -19), beta 0.1, so the margins are h = +2 and -2. Hand values: -log σ(x) = log(1 + e^-x).
#include <gtest/gtest.h>

#include "losses.h"
#include "trainer.h"

using namespace mmr::train;

namespace {

PairLogps pairs() {
  PairLogps p;
  p.chosen = torch::tensor({-10.0, -20.0});
  p.rejected = torch::tensor({-12.0, -18.0});
  p.ref_chosen = torch::tensor({-11.0, -19.0});
  p.ref_rejected = torch::tensor({-11.0, -19.0});
  p.chosen_mean = torch::tensor({-1.0, -2.0});
  p.rejected_mean = torch::tensor({-1.5, -1.0});
  p.chosen_count = torch::tensor({10.0, 10.0});
  return p;
}

void expect_losses(const PreferenceLoss& l, std::vector<double> want, double tol = 1e-6) {
  ASSERT_EQ(l.losses.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(l.losses[static_cast<int64_t>(i)].item<double>(), want[i], tol) << i;
}

PreferenceLossConfig cfg(const std::string& type, double beta = 0.1) {
  PreferenceLossConfig c;
  c.type = type;
  c.beta = beta;
  return c;
}

}  // namespace

TEST(PreferenceLoss, SigmoidDpo) {
  // log(1 + e^-0.2) = 0.598138869, log(1 + e^0.2) = 0.798138869
  const auto l = preference_loss(pairs(), cfg("sigmoid"));
  expect_losses(l, {0.5981388693815918, 0.7981388693815918});
  EXPECT_NEAR(l.loss.item<double>(), (0.5981388693815918 + 0.7981388693815918) / 2, 1e-6);
  EXPECT_NEAR(l.chosen_rewards[0].item<double>(), 0.1, 1e-6);     // 0.1 * (-10 - -11)
  EXPECT_NEAR(l.rejected_rewards[0].item<double>(), -0.1, 1e-6);  // 0.1 * (-12 - -11)
}

TEST(PreferenceLoss, ConservativeDpoIsLabelSmoothedSigmoid) {
  auto c = cfg("sigmoid");
  c.label_smoothing = 0.2;  // 0.8 * 0.598139 + 0.2 * 0.798139 and 0.8 * 0.798139 + 0.2 * 0.598139
  expect_losses(preference_loss(pairs(), c), {0.6381388693815918, 0.7581388693815919});
}

TEST(PreferenceLoss, RobustDpo) {
  auto c = cfg("robust");
  c.label_smoothing = 0.2;  // (0.8 * 0.598139 - 0.2 * 0.798139) / 0.6, (0.8 * 0.798139 - 0.2 * 0.598139) / 0.6
  expect_losses(preference_loss(pairs(), c), {0.5314722027149251, 0.8648055360482586});
  c.label_smoothing = 0.5;
  EXPECT_THROW(preference_loss(pairs(), c), mmr::Error);
}

TEST(PreferenceLoss, Ipo) {
  expect_losses(preference_loss(pairs(), cfg("ipo")), {9.0, 49.0});  // (2 - 5)^2, (-2 - 5)^2
}

TEST(PreferenceLoss, Hinge) {
  expect_losses(preference_loss(pairs(), cfg("hinge")), {0.8, 1.2});  // max(0, 1 - 0.2), max(0, 1 + 0.2)
}

TEST(PreferenceLoss, SimpoIsReferenceFreeOnTokenMeans) {
  PairLogps p = pairs();
  p.ref_chosen = p.ref_rejected = torch::Tensor();  // needs no reference
  auto c = cfg("simpo", 2.0);
  c.simpo_gamma = 0.5;  // -log σ(2 (-1 + 1.5) - 0.5) = log(1 + e^-0.5); -log σ(2 (-2 + 1) - 0.5) = log(1 + e^2.5)
  expect_losses(preference_loss(p, c), {0.4740769841801067, 2.5788897342925496});
}

TEST(PreferenceLoss, OrpoAddsTheChosenNll) {
  PairLogps p = pairs();
  p.ref_chosen = p.ref_rejected = torch::Tensor();
  // log odds(m) = m - log(1 - e^m); ratio term -log σ(lo(c) - lo(r)) = 0.401135, 1.551445; NLL = 1.5 (pooled)
  const auto l = preference_loss(p, cfg("orpo"));
  expect_losses(l, {0.1 * 0.4011354881120047, 0.1 * 1.551444713932051});
  EXPECT_NEAR(l.loss.item<double>(), 1.5976290101022028, 1e-6);
}

TEST(PreferenceLoss, KtoJudgesEachResponseAgainstTheBatchReferencePoint) {
  PairLogps p = pairs();
  p.chosen = torch::tensor({-8.0, -20.0});  // log-ratios: chosen 3, -1; rejected -1, 1; z0 = max(0, 0.5) = 0.5
  // 0.5 * [(1 - σ(0.1 (3 - 0.5))) + (1 - σ(0.1 (0.5 + 1)))], 0.5 * [(1 - σ(0.1 (-1 - 0.5))) + (1 - σ(0.1 (0.5 - 1)))]
  expect_losses(preference_loss(p, cfg("kto")), {0.45019682688522616, 0.52496362091398});
}

TEST(PreferenceLoss, GradientsFlowToThePolicyOnly) {
  PairLogps p = pairs();
  p.chosen.requires_grad_(true);
  p.rejected.requires_grad_(true);
  const auto l = preference_loss(p, cfg("sigmoid"));
  l.loss.backward();
  // d/dπc of mean(-log σ(β h)) = -β σ(-β h) / 2
  EXPECT_NEAR(p.chosen.grad()[0].item<double>(), -0.1 * (1 / (1 + std::exp(0.2))) / 2, 1e-7);
  EXPECT_NEAR(p.rejected.grad()[0].item<double>(), 0.1 * (1 / (1 + std::exp(0.2))) / 2, 1e-7);
  EXPECT_FALSE(l.chosen_rewards.requires_grad());
}

TEST(PreferenceLoss, UnknownTypeAndMissingReferenceAreClearErrors) {
  EXPECT_THROW(preference_loss(pairs(), cfg("dpoo")), mmr::ConfigError);
  PairLogps p = pairs();
  p.ref_chosen = torch::Tensor();
  EXPECT_THROW(preference_loss(p, cfg("sigmoid")), mmr::Error);
}

// transformers' get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup, evaluated by hand.
TEST(Schedule, WarmupThenCosineOrLinear) {
  EXPECT_DOUBLE_EQ(lr_factor("cosine", 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(lr_factor("cosine", 1, 2, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_factor("cosine", 2, 2, 10), 1.0);
  EXPECT_NEAR(lr_factor("cosine", 6, 2, 10), 0.5, 1e-12);        // halfway through the decay: 0.5 (1 + cos(π/2))
  EXPECT_NEAR(lr_factor("cosine", 4, 2, 10), 0.8535533905932737, 1e-12);  // 0.5 (1 + cos(π/4))
  EXPECT_NEAR(lr_factor("linear", 6, 2, 10), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_factor("constant", 7, 2, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor("cosine", 0, 0, 10), 1.0);
}

TEST(Order, EpochOrderIsAPermutationFixedBySeedAndEpoch) {
  auto a = epoch_order(50, 7, 0), b = epoch_order(50, 7, 0), c = epoch_order(50, 7, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::sort(c.begin(), c.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(c[static_cast<size_t>(i)], i);
}
