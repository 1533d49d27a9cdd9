// One forward of a preference objective over a micro-batch of pairs: both sides of every pair in one padded batch,
// response log-probs (LLaVA's get_batch_logps), the chosen loss, and the per-step metrics TRL reports
// (rewards/chosen, rewards/rejected, rewards/accuracy, rewards/margin, logps/chosen, logps/rejected).
#pragma once

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "common.h"
#include "core/api/model_api.h"
#include "losses.h"

namespace mmr::train {

struct PreferenceExample {
  EncodedSample chosen, rejected;  // labels on the last reply only (keep_last_reply)
  // Reference log-probs: summed and token-mean; NaN when unknown.
  double ref_chosen = std::numeric_limits<double>::quiet_NaN(), ref_rejected = std::numeric_limits<double>::quiet_NaN();
  double ref_chosen_mean = std::numeric_limits<double>::quiet_NaN();
  double ref_rejected_mean = std::numeric_limits<double>::quiet_NaN();
};

struct PreferenceConfig {
  PreferenceLossConfig loss;
  bool use_average = false;  // compare token-mean instead of summed log-probs (the *_avg_logp reference fields)
  std::string prefix_sharing = "off";  // off, on, shared_dropout: see pair_logps
};

struct PreferenceOutputs {
  PreferenceLoss loss;
  SequenceLogps chosen, rejected;
  int64_t tokens = 0;
  std::map<std::string, double> metrics() const;
};

// `reference`, when given, computes the reference log-probs live (no gradients): another frozen model, or `policy`
// itself, which then runs with its adapters disabled. Otherwise they come from the examples.
PreferenceOutputs preference_forward(LanguageModel& policy, const std::vector<const PreferenceExample*>& pairs,
                                     const PreferenceConfig& config, LanguageModel* reference = nullptr);

// Reference log-probs of the pairs' both sides with `model` (no gradients, eval mode), written into the examples.
void compute_reference(LanguageModel& model, const std::vector<PreferenceExample*>& examples, int64_t batch_size,
                       const std::function<void()>& on_batch = {}, const std::string& prefix_sharing = "off");

}  // namespace mmr::train
