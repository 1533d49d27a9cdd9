// Preference-optimisation losses, as pure tensor functions of per-example log-probabilities (so each one is unit
// tested against hand-computed values). Shapes: (P) for P pairs; a "logp" is the summed response log-probability
// of a sequence (or its token mean where the loss says so).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace mmr::train {

struct PreferenceLossConfig {
  std::string type = "sigmoid";  // sigmoid | ipo | hinge | robust | simpo | orpo | kto
  double beta = 0.1;
  double label_smoothing = 0.0;  // sigmoid: conservative DPO; robust: the assumed flip rate
  double simpo_gamma = 0.5;      // simpo: the target reward margin
  double kto_desirable_weight = 1.0, kto_undesirable_weight = 1.0;
};

// What every loss needs; the reference-free ones (simpo, orpo) ignore ref_*. `*_mean` are the token means and
// `*_count` the token counts of the responses.
struct PairLogps {
  torch::Tensor chosen, rejected;            // summed policy log-probs, or means when the run uses averages
  torch::Tensor ref_chosen, ref_rejected;    // the reference's, same reduction (undefined when reference-free)
  torch::Tensor chosen_mean, rejected_mean;  // token-mean policy log-probs (simpo, orpo)
  torch::Tensor chosen_count;                // response tokens of the chosen side (orpo's NLL term)
};

struct PreferenceLoss {
  torch::Tensor losses;            // (P) per pair (kto: the mean of the pair's desirable and undesirable terms)
  torch::Tensor loss;              // scalar: the mean over pairs (orpo: plus the pooled NLL)
  torch::Tensor chosen_rewards;    // (P), detached
  torch::Tensor rejected_rewards;  // (P), detached
};

PreferenceLoss preference_loss(const PairLogps& in, const PreferenceLossConfig& config);

// The loss types and whether each needs reference log-probs.
std::vector<std::string> preference_loss_types();
bool loss_needs_reference(const std::string& type);

}  // namespace mmr::train
