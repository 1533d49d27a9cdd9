// One DPO step and one SFT step against HF transformers + PEFT (the fixture's expected/dpo_step.json,
// dpo_grads.safetensors and sft_step.json): per-pair policy log-probs, losses, rewards, every trainable tensor's
// gradient (relative error <= 1e-3), the loss after one AdamW step, then the SFT loss and gradient norms. The code
// under test is what the dpo and sft plugins run (preference_forward, make_optimizer, the model's lm_loss), in
// training mode with per-layer activation recomputation on, as training runs. Every expected number comes from the
// fixture (LLAVA_REFERENCE_DIR selects another one).
#include "fixture.h"
#include "common.h"
#include "preference.h"
#include "trainer.h"

using namespace llava_fixture;
using namespace mmr::train;

namespace {

constexpr double kGradRelTol = 1e-3;

std::vector<PreferenceExample> fixture_pairs(LlavaModel& model) {
  std::vector<PreferenceExample> out;
  for (const auto& row : read_jsonl(fixture() / "expected" / "preference_logps.jsonl")) {
    PreferenceExample e;
    e.chosen = keep_last_reply(model.encode(pair_sample(row, "chosen")));
    e.rejected = keep_last_reply(model.encode(pair_sample(row, "rejected")));
    e.ref_chosen = row["ref_win_logp"].get<double>();
    e.ref_rejected = row["ref_rej_logp"].get<double>();
    out.push_back(std::move(e));
  }
  return out;
}

std::unique_ptr<LlavaModel> policy(bool checkpointing) {
  LlavaOptions o = base_options();
  o.adapter = (fixture() / "adapter").string();
  o.train_projector = true;
  auto m = std::make_unique<LlavaModel>(o);
  m->set_training(true);
  m->set_activation_checkpointing(checkpointing);
  return m;
}

double rel_err(const torch::Tensor& got, const torch::Tensor& want) {
  const auto g = got.to(torch::kCPU, torch::kFloat64), w = want.to(torch::kCPU, torch::kFloat64);
  return (g - w).norm().item<double>() / std::max(w.norm().item<double>(), 1e-30);
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

PreferenceConfig paper_dpo() {
  PreferenceConfig c;
  c.loss.type = "sigmoid";
  c.loss.beta = 0.1;
  c.use_average = false;
  return c;
}

}  // namespace

TEST(TrainingParity, OneDpoStepThenOneSftStepMatchHfPeft) {
  const json dpo = read_json(fixture() / "expected" / "dpo_step.json");
  const json sft = read_json(fixture() / "expected" / "sft_step.json");
  ASSERT_DOUBLE_EQ(dpo["beta"].get<double>(), 0.1);
  ASSERT_FALSE(dpo["use_average"].get<bool>());
  auto model = policy(/*checkpointing=*/true);
  const auto pairs = fixture_pairs(*model);
  std::vector<const PreferenceExample*> all;
  for (const auto& p : pairs) all.push_back(&p);

  // ---- forward: log-probs, losses, rewards ----
  PreferenceOutputs out = preference_forward(*model, all, paper_dpo());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto k = static_cast<int64_t>(i);
    EXPECT_NEAR(out.chosen.sum[k].item<double>(), dpo["policy_chosen_logps"][i].get<double>(), 1e-3 * scale()) << i;
    EXPECT_NEAR(out.rejected.sum[k].item<double>(), dpo["policy_rejected_logps"][i].get<double>(), 1e-3 * scale()) << i;
    EXPECT_NEAR(out.loss.losses[k].item<double>(), dpo["losses"][i].get<double>(), 1e-4 * scale()) << i;
    EXPECT_NEAR(out.loss.chosen_rewards[k].item<double>(), dpo["chosen_rewards"][i].get<double>(), 1e-4 * scale()) << i;
    EXPECT_NEAR(out.loss.rejected_rewards[k].item<double>(), dpo["rejected_rewards"][i].get<double>(), 1e-4 * scale()) << i;
  }
  EXPECT_NEAR(out.loss.loss.item<double>(), dpo["loss"].get<double>(), 1e-4 * scale());

  // ---- backward: every trainable tensor's gradient ----
  auto params = model->trainable_parameters();
  ASSERT_EQ(params.size(), dpo["grad_norms"].size()) << "trainable tensors differ from the fixture's";
  for (auto& [name, t] : params) t.mutable_grad() = torch::Tensor();
  out.loss.loss.backward();
  const st::SafetensorsFile grads = st::SafetensorsFile::open((fixture() / "expected" / "dpo_grads.safetensors").string());
  for (auto& [name, t] : params) {
    ASSERT_TRUE(dpo["grad_norms"].contains(name)) << name;
    ASSERT_TRUE(t.grad().defined()) << name << " got no gradient";
    const double want = dpo["grad_norms"][name].get<double>();
    EXPECT_LE(std::abs(t.grad().norm().item<double>() - want) / want, kGradRelTol * scale()) << name;
    EXPECT_LE(rel_err(t.grad(), expected(grads, name)), kGradRelTol * scale()) << name;
  }

  // ---- one AdamW step (lr 1e-3, betas 0.9/0.999, eps 1e-8, no weight decay), then the loss again ----
  TrainConfig cfg;
  cfg.lr = 1e-3, cfg.projector_lr = -1, cfg.weight_decay = 0, cfg.adam_beta1 = 0.9, cfg.adam_beta2 = 0.999;
  cfg.adam_eps = 1e-8;
  auto opt = make_optimizer(model->parameter_groups(), cfg);
  opt->step();
  {
    torch::NoGradGuard no_grad;
    const PreferenceOutputs after = preference_forward(*model, all, paper_dpo());
    EXPECT_NEAR(after.loss.loss.item<double>(), dpo["loss_after_one_step"].get<double>(), 1e-4 * scale());
  }

  // ---- SFT on single_0..single_3 after that step: token-mean cross-entropy and gradient norms ----
  std::vector<mmr::EncodedSample> rows;
  std::vector<double> per_row;
  for (const auto& row : read_jsonl(fixture() / "expected" / "tokenization.jsonl")) {
    const std::string id = row["id"].get<std::string>();
    if (id.rfind("single_", 0) == 0) rows.push_back(model->encode(sample_of(row)));
  }
  ASSERT_EQ(rows.size(), sft["per_row_mean_ce"].size());
  for (auto& [name, t] : params) t.mutable_grad() = torch::Tensor();
  for (size_t i = 0; i < rows.size(); ++i) {
    torch::NoGradGuard no_grad;
    EXPECT_NEAR(model->lm_loss(model->collate({rows[i]}, false)).item<double>(), sft["per_row_mean_ce"][i].get<double>(),
                1e-4 * scale()) << i;
  }
  const torch::Tensor loss = model->lm_loss(model->collate(rows, false));
  EXPECT_NEAR(loss.item<double>(), sft["loss"].get<double>(), 1e-4 * scale());
  loss.backward();
  for (auto& [name, t] : params) {
    const double want = sft["grad_norms"][name].get<double>();
    EXPECT_LE(std::abs(t.grad().norm().item<double>() - want) / want, kGradRelTol * scale()) << name;
  }
}

// Activation recomputation changes memory, not numbers: the same gradients with and without it, including with
// LoRA dropout (the recomputation must draw the same dropout masks).
TEST(ActivationRecomputation, GivesTheSameGradientsWithDropout) {
  auto grads_of = [](bool checkpointing) {
    LlavaOptions o = base_options();
    o.lora_r = 4, o.lora_alpha = 8, o.lora_dropout = 0.3, o.seed = 3, o.train_projector = true;
    LlavaModel model(o);
    model.set_training(true);
    model.set_activation_checkpointing(checkpointing);
    {  // make B non-zero so A gets gradients too
      torch::NoGradGuard no_grad;
      for (auto& [name, t] : model.trainable_parameters())
        if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.02, c10::nullopt);
    }
    auto pairs = fixture_pairs(model);
    std::vector<const PreferenceExample*> all;
    for (const auto& p : pairs) all.push_back(&p);
    torch::manual_seed(1234);
    PreferenceOutputs out = preference_forward(model, all, paper_dpo());
    out.loss.loss.backward();
    std::map<std::string, torch::Tensor> g;
    for (auto& [name, t] : model.trainable_parameters()) g[name] = t.grad().clone();
    return std::make_pair(out.loss.loss.item<double>(), g);
  };
  const auto [loss_plain, plain] = grads_of(false);
  const auto [loss_ckpt, ckpt] = grads_of(true);
  // Bit-identical on CPU; CUDA float32 kernels may differ in the last bits between the two forwards.
  EXPECT_NEAR(loss_ckpt, loss_plain, 1e-7 * scale() * std::abs(loss_plain));
  ASSERT_EQ(plain.size(), ckpt.size());
  for (const auto& [name, g] : plain) {
    ASSERT_TRUE(ckpt.at(name).defined()) << name;
    EXPECT_LE(rel_err(ckpt.at(name), g), 1e-5) << name;
  }
}

// reference: live without reference_model runs the policy with its adapters off. That must be the base model HF
// computed the fixture's ref_*_logp with, even after training moved the projector (a trained copy, as PEFT's
// modules_to_save), and switching the adapters back on must give the policy's log-probs again.
TEST(LiveReference, IsThePolicyWithAdaptersOff) {
  const json dpo = read_json(fixture() / "expected" / "dpo_step.json");
  auto model = policy(/*checkpointing=*/false);
  {
    torch::NoGradGuard no_grad;  // what training does to the projector: its trainable copy moves
    for (auto& group : model->parameter_groups())
      if (group.name == "projector")
        for (auto& [name, t] : group.params) t.add_(0.05);
  }
  const auto pairs = fixture_pairs(*model);
  std::vector<const mmr::EncodedSample*> chosen, rejected;
  for (const auto& p : pairs) chosen.push_back(&p.chosen), rejected.push_back(&p.rejected);
  torch::NoGradGuard no_grad;
  {
    mmr::AdaptersDisabled base(*model);
    const PairSides ref = pair_logps(*model, chosen, rejected);
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto k = static_cast<int64_t>(i);
      EXPECT_NEAR(ref.chosen.sum[k].item<double>(), pairs[i].ref_chosen, 1e-3 * scale()) << i;
      EXPECT_NEAR(ref.rejected.sum[k].item<double>(), pairs[i].ref_rejected, 1e-3 * scale()) << i;
    }
  }
  const PairSides moved = pair_logps(*model, chosen, rejected);  // adapters on again, projector moved
  double diff = 0;
  for (size_t i = 0; i < pairs.size(); ++i)
    diff += std::abs(moved.chosen.sum[static_cast<int64_t>(i)].item<double>() - dpo["policy_chosen_logps"][i].get<double>());
  EXPECT_GT(diff, 1e-2) << "the moved projector should change the policy's log-probs";
}

// prefix_sharing: on packs each pair into one row and computes its prompt (image included) once for both sides.
// The log-probs, losses and every gradient must still be HF + PEFT's, which computed the two rows apart.
TEST(PrefixSharing, OneDpoStepStillMatchesHfPeft) {
  const json dpo = read_json(fixture() / "expected" / "dpo_step.json");
  auto model = policy(/*checkpointing=*/true);
  const auto pairs = fixture_pairs(*model);
  std::vector<const PreferenceExample*> all;
  for (const auto& p : pairs) all.push_back(&p);
  PreferenceConfig config = paper_dpo();
  config.prefix_sharing = "on";
  PreferenceOutputs out = preference_forward(*model, all, config);
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto k = static_cast<int64_t>(i);
    EXPECT_NEAR(out.chosen.sum[k].item<double>(), dpo["policy_chosen_logps"][i].get<double>(), 1e-3 * scale()) << i;
    EXPECT_NEAR(out.rejected.sum[k].item<double>(), dpo["policy_rejected_logps"][i].get<double>(), 1e-3 * scale()) << i;
    EXPECT_NEAR(out.loss.losses[k].item<double>(), dpo["losses"][i].get<double>(), 1e-4 * scale()) << i;
  }
  EXPECT_NEAR(out.loss.loss.item<double>(), dpo["loss"].get<double>(), 1e-4 * scale());
  auto params = model->trainable_parameters();
  for (auto& [name, t] : params) t.mutable_grad() = torch::Tensor();
  out.loss.loss.backward();
  const st::SafetensorsFile grads = st::SafetensorsFile::open((fixture() / "expected" / "dpo_grads.safetensors").string());
  for (auto& [name, t] : params) {
    ASSERT_TRUE(t.grad().defined()) << name << " got no gradient";
    EXPECT_LE(rel_err(t.grad(), expected(grads, name)), kGradRelTol * scale()) << name;
  }
}

// Token by token (what the reference_logps stage stores), sharing gives the rows' own log-probs, and counts the
// same tokens.
TEST(PrefixSharing, PerTokenLogProbsAreThoseOfTheRowsApart) {
  auto model = policy(/*checkpointing=*/false);
  const auto pairs = fixture_pairs(*model);
  std::vector<const mmr::EncodedSample*> chosen, rejected;
  for (const auto& p : pairs) chosen.push_back(&p.chosen), rejected.push_back(&p.rejected);
  torch::NoGradGuard no_grad;
  const PairSides apart = pair_logps(*model, chosen, rejected, /*per_token=*/true, "off");
  const PairSides shared = pair_logps(*model, chosen, rejected, /*per_token=*/true, "on");
  EXPECT_EQ(shared.tokens, apart.tokens);
  std::vector<mmr::LanguageModel::SharedPromptPair> packed;  // the model packs them itself (no fallback taken)
  for (size_t i = 0; i < pairs.size(); ++i)
    packed.push_back({chosen[i], rejected[i], shared_prompt_tokens(*chosen[i], *rejected[i], i)});
  ASSERT_TRUE(model->shared_prompt_logps(packed, true, false).has_value());
  for (auto side : {&PairSides::chosen, &PairSides::rejected}) {
    const mmr::SequenceLogps &a = apart.*side, &s = shared.*side;
    EXPECT_TRUE(torch::equal(s.count, a.count));
    ASSERT_EQ(s.per_token.size(), a.per_token.size());
    for (size_t i = 0; i < a.per_token.size(); ++i) {
      ASSERT_EQ(s.per_token[i].sizes(), a.per_token[i].sizes()) << i;
      EXPECT_LE((s.per_token[i] - a.per_token[i]).abs().max().item<double>(), 1e-5 * scale()) << i;
    }
    EXPECT_LE((s.mean - a.mean).abs().max().item<double>(), 1e-5 * scale());
  }
}

// Sharing is checked, not assumed: rows with different prompts or images are an error naming the pair, and with
// LoRA dropout in training one dropout mask over the prompt for both sides must be accepted explicitly.
TEST(PrefixSharing, RefusesDifferentPromptsAndASharedDropoutMaskUnlessAccepted) {
  LlavaOptions o = base_options();
  o.lora_r = 4, o.lora_alpha = 8, o.lora_dropout = 0.1;
  LlavaModel model(o);
  model.set_training(true);
  const auto pairs = fixture_pairs(model);
  auto expect_error = [&](const std::vector<const mmr::EncodedSample*>& c,
                          const std::vector<const mmr::EncodedSample*>& r, const std::string& sharing,
                          const std::string& says) {
    try {
      pair_logps(model, c, r, false, sharing);
      ADD_FAILURE() << "no error; expected one saying " << says;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  expect_error({&pairs[0].chosen, &pairs[1].chosen}, {&pairs[0].rejected, &pairs[2].rejected}, "shared_dropout",
               "pair 1 (0-based, in the batch's order): the chosen and rejected rows differ at prompt token");
  mmr::EncodedSample other_image = pairs[0].rejected;
  other_image.images = pairs[2].chosen.images;
  expect_error({&pairs[0].chosen}, {&other_image}, "shared_dropout", "different images");
  expect_error({&pairs[0].chosen}, {&pairs[0].rejected}, "on", "set prefix_sharing: shared_dropout to accept");
  const PairSides accepted = pair_logps(model, {&pairs[0].chosen}, {&pairs[0].rejected}, false, "shared_dropout");
  EXPECT_TRUE(std::isfinite(accepted.chosen.sum[0].item<double>()));
}
