// See preference.h.
#include "preference.h"

#include <optional>

#include "core/api/error.h"

namespace mmr::train {

std::map<std::string, double> PreferenceOutputs::metrics() const {
  const torch::Tensor c = loss.chosen_rewards.to(torch::kFloat64), r = loss.rejected_rewards.to(torch::kFloat64);
  return {{"rewards/chosen", c.mean().item<double>()},
          {"rewards/rejected", r.mean().item<double>()},
          {"rewards/accuracy", (c > r).to(torch::kFloat64).mean().item<double>()},
          {"rewards/margin", (c - r).mean().item<double>()},
          {"logps/chosen", chosen.sum.detach().to(torch::kFloat64).mean().item<double>()},
          {"logps/rejected", rejected.sum.detach().to(torch::kFloat64).mean().item<double>()}};
}

namespace {

PairSides both_sides(LanguageModel& model, const std::vector<const PreferenceExample*>& pairs,
                     const std::string& prefix_sharing) {
  std::vector<const EncodedSample*> chosen, rejected;
  for (const auto* p : pairs) chosen.push_back(&p->chosen), rejected.push_back(&p->rejected);
  return pair_logps(model, chosen, rejected, /*per_token=*/false, prefix_sharing);
}

}  // namespace

PreferenceOutputs preference_forward(LanguageModel& policy, const std::vector<const PreferenceExample*>& pairs,
                                     const PreferenceConfig& config, LanguageModel* reference) {
  MMR_CHECK(!pairs.empty(), "preference_forward: no pairs");
  PreferenceOutputs out;
  PairSides sides = both_sides(policy, pairs, config.prefix_sharing);
  out.chosen = std::move(sides.chosen), out.rejected = std::move(sides.rejected), out.tokens = sides.tokens;
  PairLogps in;
  const bool avg = config.use_average;
  in.chosen = avg ? out.chosen.mean : out.chosen.sum;
  in.rejected = avg ? out.rejected.mean : out.rejected.sum;
  in.chosen_mean = out.chosen.mean;
  in.rejected_mean = out.rejected.mean;
  in.chosen_count = out.chosen.count;
  if (loss_needs_reference(config.loss.type)) {
    if (reference) {
      torch::NoGradGuard no_grad;
      std::optional<AdaptersDisabled> base;  // the policy as its own reference: its adapters off (as TRL with PEFT)
      if (reference == &policy) base.emplace(policy);
      const PairSides ref = both_sides(*reference, pairs, config.prefix_sharing);
      const SequenceLogps &rc = ref.chosen, &rr = ref.rejected;
      in.ref_chosen = (avg ? rc.mean : rc.sum).to(in.chosen.device(), in.chosen.scalar_type());
      in.ref_rejected = (avg ? rr.mean : rr.sum).to(in.chosen.device(), in.chosen.scalar_type());
    } else {
      std::vector<double> rc, rr;
      for (const auto* p : pairs) {
        rc.push_back(avg ? p->ref_chosen_mean : p->ref_chosen);
        rr.push_back(avg ? p->ref_rejected_mean : p->ref_rejected);
        if (std::isnan(rc.back()) || std::isnan(rr.back()))
          throw DataError("a pair has no reference log-probs (" + std::string(avg ? "*_avg_logp" : "ref_*_logp") +
                          "); add a reference_logps stage or set reference: initial");
      }
      const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
      in.ref_chosen = torch::tensor(rc, opts).to(in.chosen.device(), in.chosen.scalar_type());
      in.ref_rejected = torch::tensor(rr, opts).to(in.chosen.device(), in.chosen.scalar_type());
    }
  }
  out.loss = preference_loss(in, config.loss);
  return out;
}

void compute_reference(LanguageModel& model, const std::vector<PreferenceExample*>& examples, int64_t batch_size,
                       const std::function<void()>& on_batch, const std::string& prefix_sharing) {
  torch::NoGradGuard no_grad;
  model.set_training(false);
  for (size_t i = 0; i < examples.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<const PreferenceExample*> part;
    for (size_t j = i; j < std::min(examples.size(), i + static_cast<size_t>(batch_size)); ++j) part.push_back(examples[j]);
    const PairSides sides = both_sides(model, part, prefix_sharing);
    const SequenceLogps &c = sides.chosen, &r = sides.rejected;
    const auto cs = c.sum.to(torch::kCPU, torch::kFloat64), rs = r.sum.to(torch::kCPU, torch::kFloat64);
    const auto cm = c.mean.to(torch::kCPU, torch::kFloat64), rm = r.mean.to(torch::kCPU, torch::kFloat64);
    for (size_t k = 0; k < part.size(); ++k) {
      PreferenceExample& e = *examples[i + k];
      const int64_t kk = static_cast<int64_t>(k);
      e.ref_chosen = cs[kk].item<double>(), e.ref_rejected = rs[kk].item<double>();
      e.ref_chosen_mean = cm[kk].item<double>(), e.ref_rejected_mean = rm[kk].item<double>();
    }
    if (on_batch) on_batch();
  }
}

}  // namespace mmr::train
