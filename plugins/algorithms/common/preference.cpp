// See preference.h.
#include "preference.h"

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

// Both sides of the pairs in one right-padded batch: chosen rows first, then rejected.
std::pair<SequenceLogps, SequenceLogps> both_sides(LanguageModel& model, const std::vector<const PreferenceExample*>& pairs,
                                                   int64_t* tokens) {
  std::vector<EncodedSample> samples;
  for (const auto* p : pairs) samples.push_back(p->chosen);
  for (const auto* p : pairs) samples.push_back(p->rejected);
  const ModelBatch batch = model.collate(samples, false);
  if (tokens) *tokens = batch.attention_mask.sum().item<int64_t>();
  const SequenceLogps all = model.sequence_logps(batch);
  const int64_t n = static_cast<int64_t>(pairs.size());
  SequenceLogps c, r;
  c.sum = all.sum.narrow(0, 0, n), r.sum = all.sum.narrow(0, n, n);
  c.mean = all.mean.narrow(0, 0, n), r.mean = all.mean.narrow(0, n, n);
  c.count = all.count.narrow(0, 0, n), r.count = all.count.narrow(0, n, n);
  return {c, r};
}

}  // namespace

PreferenceOutputs preference_forward(LanguageModel& policy, const std::vector<const PreferenceExample*>& pairs,
                                     const PreferenceConfig& config, LanguageModel* reference) {
  MMR_CHECK(!pairs.empty(), "preference_forward: no pairs");
  PreferenceOutputs out;
  std::tie(out.chosen, out.rejected) = both_sides(policy, pairs, &out.tokens);
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
      auto [rc, rr] = both_sides(*reference, pairs, nullptr);
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
                       const std::function<void()>& on_batch) {
  torch::NoGradGuard no_grad;
  model.set_training(false);
  for (size_t i = 0; i < examples.size(); i += static_cast<size_t>(batch_size)) {
    std::vector<const PreferenceExample*> part;
    for (size_t j = i; j < std::min(examples.size(), i + static_cast<size_t>(batch_size)); ++j) part.push_back(examples[j]);
    auto [c, r] = both_sides(model, part, nullptr);
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
