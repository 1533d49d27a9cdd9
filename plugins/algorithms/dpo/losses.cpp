// The preference losses. Each cites the paper it implements; h is the log-ratio margin
//   h = (π_c − ref_c) − (π_r − ref_r),
// where π and ref are the policy's and the reference's response log-probabilities.
#include "losses.h"

#include "core/api/error.h"

namespace mmr::train {

namespace F = torch::nn::functional;

std::vector<std::string> preference_loss_types() { return {"sigmoid", "ipo", "hinge", "robust", "simpo", "orpo", "kto"}; }

bool loss_needs_reference(const std::string& type) { return type != "simpo" && type != "orpo"; }

PreferenceLoss preference_loss(const PairLogps& in, const PreferenceLossConfig& c) {
  MMR_CHECK(c.beta > 0, "beta must be positive");
  const double beta = c.beta;
  PreferenceLoss out;
  if (loss_needs_reference(c.type)) {
    MMR_CHECK(in.ref_chosen.defined() && in.ref_rejected.defined(), "loss '" + c.type + "' needs reference log-probs");
  }
  if (c.type == "sigmoid" || c.type == "robust" || c.type == "ipo" || c.type == "hinge") {
    const torch::Tensor h = (in.chosen - in.ref_chosen) - (in.rejected - in.ref_rejected);
    if (c.type == "sigmoid") {
      // DPO, Rafailov et al. 2023, "Direct Preference Optimization", eq. 7: −log σ(β h). With label smoothing ε
      // it is conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"): the expected loss when each
      // label is flipped with probability ε, −(1−ε) log σ(β h) − ε log σ(−β h).
      out.losses = -F::logsigmoid(beta * h) * (1 - c.label_smoothing) - F::logsigmoid(-beta * h) * c.label_smoothing;
    } else if (c.type == "robust") {
      // Robust DPO, Chowdhury et al. 2024, "Provably Robust DPO", eq. 8: an unbiased loss under label-flip rate
      // ε < 1/2: [−(1−ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε).
      MMR_CHECK(c.label_smoothing < 0.5, "robust DPO needs label_smoothing < 0.5");
      out.losses = (-F::logsigmoid(beta * h) * (1 - c.label_smoothing) + F::logsigmoid(-beta * h) * c.label_smoothing) /
                   (1 - 2 * c.label_smoothing);
    } else if (c.type == "ipo") {
      // IPO, Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
      // eq. 17: (h − 1/(2β))², β playing the role of their τ.
      out.losses = (h - 1 / (2 * beta)).pow(2);
    } else {
      // SLiC-HF hinge, Zhao et al. 2023, "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", with the
      // reference term as TRL applies it: max(0, 1 − β h).
      out.losses = torch::relu(1 - beta * h);
    }
    out.loss = out.losses.mean();
    out.chosen_rewards = (beta * (in.chosen - in.ref_chosen)).detach();
    out.rejected_rewards = (beta * (in.rejected - in.ref_rejected)).detach();
  } else if (c.type == "simpo") {
    // SimPO, Meng et al. 2024, "SimPO: Simple Preference Optimization with a Reference-Free Reward", eq. 6:
    // −log σ(β (π̄_c − π̄_r) − γ), with π̄ the token-mean log-probability (no reference model).
    MMR_CHECK(in.chosen_mean.defined() && in.rejected_mean.defined(), "simpo needs token-mean log-probs");
    out.losses = -F::logsigmoid(beta * (in.chosen_mean - in.rejected_mean) - c.simpo_gamma);
    out.loss = out.losses.mean();
    out.chosen_rewards = (beta * in.chosen_mean).detach();
    out.rejected_rewards = (beta * in.rejected_mean).detach();
  } else if (c.type == "orpo") {
    // ORPO, Hong et al. 2024, "ORPO: Monolithic Preference Optimization without Reference Model", eq. 6–7:
    // L = L_SFT(chosen) + λ · (−log σ(log odds(y_c) − log odds(y_r))), odds(y) = p̄/(1 − p̄), p̄ = exp(token-mean
    // log-prob); λ is `beta`. L_SFT is the token-mean NLL of the chosen responses, pooled over the pairs.
    MMR_CHECK(in.chosen_mean.defined() && in.rejected_mean.defined() && in.chosen_count.defined(),
              "orpo needs token-mean log-probs and token counts");
    auto log_odds = [](const torch::Tensor& m) { return m - torch::log1p(-torch::exp(m)); };
    const torch::Tensor ratio = -F::logsigmoid(log_odds(in.chosen_mean) - log_odds(in.rejected_mean));
    const torch::Tensor nll = -(in.chosen_mean * in.chosen_count).sum() / in.chosen_count.sum().clamp_min(1);
    out.losses = beta * ratio;
    out.loss = nll + out.losses.mean();
    out.chosen_rewards = (beta * in.chosen_mean).detach();
    out.rejected_rewards = (beta * in.rejected_mean).detach();
  } else if (c.type == "kto") {
    // KTO, Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", eq. 8: each response
    // is judged on its own (desirable = chosen, undesirable = rejected): r = π − ref, z0 = max(0, E[r]) (detached),
    // L = λ_D (1 − σ(β (r_c − z0))) + λ_U (1 − σ(β (z0 − r_r))). The paper and TRL estimate z0 from mismatched
    // prompt/response pairs; here it is the mean log-ratio of the batch's own responses (the reference log-probs
    // are precomputed per row, so mismatched pairs have none) — see the algorithm's README.
    const torch::Tensor rc = in.chosen - in.ref_chosen, rr = in.rejected - in.ref_rejected;
    const torch::Tensor z0 = torch::cat({rc, rr}).mean().clamp_min(0).detach();
    // Each pair holds one desirable and one undesirable example; the loss is the mean over all 2P examples.
    out.losses = 0.5 * (c.kto_desirable_weight * (1 - torch::sigmoid(beta * (rc - z0))) +
                        c.kto_undesirable_weight * (1 - torch::sigmoid(beta * (z0 - rr))));
    out.loss = out.losses.mean();
    out.chosen_rewards = (beta * rc).detach();
    out.rejected_rewards = (beta * rr).detach();
  } else {
    throw ConfigError("unknown preference loss '" + c.type + "' (expected sigmoid, ipo, hinge, robust, simpo, orpo or kto)");
  }
  return out;
}

}  // namespace mmr::train
