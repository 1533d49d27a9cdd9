// The `dpo` algorithm: Direct Preference Optimization (Rafailov et al. 2023) and the variants TRL and
// LLaMA-Factory users know, chosen with `loss:` — sigmoid (DPO; with label_smoothing, conservative DPO), robust,
// ipo, hinge, simpo and orpo (reference-free), kto (each response judged on its own). Defaults are the paper's
// (DESIGN §6): beta 0.1, summed log-probs, lr 5e-5, projector lr 2e-5, 3 epochs, cosine, warmup 3%, batch 8 x 4.
//
// Reference log-probs (`reference:`):
//   auto     from the rows when every row has them (ref_win_logp / ref_rej_logp, or the *_avg_logp with
//            use_average), else `initial`
//   rows     from the rows; a row without them is an error naming it
//   initial  computed once before the first step with the model being trained (with a fresh LoRA adapter that is
//            the base model, the paper's reference), cached in the stage folder so a resumed run reuses them
//   live     evaluated at every step: the policy itself with its adapters disabled (as TRL does with a PEFT
//            model: no second copy of the weights), or another frozen model given as `reference_model`
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "common.h"
#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "preference.h"

namespace mmr::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The paper's DPO values (DESIGN §6).
TrainDefaults dpo_defaults() {
  TrainDefaults d;
  d.lr = 5e-5, d.projector_lr = 2e-5, d.epochs = 3, d.batch_size = 8, d.grad_accum = 4, d.warmup_ratio = 0.03;
  return d;
}

class Dpo : public Algorithm {
 public:
  struct Config {
    YAML::Node model, data, reference_model, eval_data;
    PreferenceConfig pref;
    std::string reference;
    TrainConfig train{dpo_defaults()};
    void bind(OptionBinder& o) {
      bind_model(o, &model);
      bind_data(o, &data, "preference pairs");
      PreferenceLossConfig& l = pref.loss;
      o.one_of("loss", &l.type, "sigmoid", preference_loss_types(), "the preference objective");
      o.bind("beta", &l.beta, 0.1, "the KL strength (simpo: the reward scale; orpo: lambda)");
      o.bind("use_average", &pref.use_average, false, "compare token-mean instead of summed response log-probs");
      bind_prefix_sharing(o, &pref.prefix_sharing);
      o.bind("label_smoothing", &l.label_smoothing, 0.0, "sigmoid: conservative DPO; robust: the assumed label-flip rate");
      o.bind("simpo_gamma", &l.simpo_gamma, 0.5, "simpo: target reward margin");
      o.bind("kto_desirable_weight", &l.kto_desirable_weight, 1.0, "kto: weight of the chosen (desirable) responses");
      o.bind("kto_undesirable_weight", &l.kto_undesirable_weight, 1.0, "kto: weight of the rejected (undesirable) responses");
      o.one_of("reference", &reference, "auto", {"auto", "rows", "initial", "live"}, "where reference log-probs come from");
      o.bind("reference_model", &reference_model, YAML::Node(),
             "reference: live — another frozen model (default: the policy with its adapters disabled)", "model");
      o.bind("eval_data", &eval_data, YAML::Node(), "held-out pairs: reward accuracy, margin and loss after training",
             "dataset");
      train.bind(o, dpo_defaults());
      o.check(l.beta > 0, "beta", "must be positive");
      o.check(l.label_smoothing >= 0 && l.label_smoothing < 0.5, "label_smoothing", "must be in [0, 0.5)");
    }
  };

  explicit Dpo(const Options& o)
      : cfg_(read_options<Config>(o)), config_(cfg_.train), pref_(cfg_.pref), reference_(cfg_.reference) {}

  static const char* summary() {
    return "DPO and its variants (sigmoid, robust/conservative, ipo, hinge, simpo, orpo, kto) with LoRA";
  }

  void run(StageContext& ctx) override {
    std::shared_ptr<LanguageModel> model = load_model(ctx);
    std::shared_ptr<Plugin> data_holder;
    DatasetProvider& data = load_dataset(ctx, "data", "preference", data_holder);
    DataContext dctx = DataContext::for_stage(ctx, "data/");
    const std::vector<PreferenceRow> rows = data.preference_rows(dctx);
    if (rows.empty()) throw DataError("stage '" + ctx.stage_name() + "': the data has no preference pairs");

    bool all_refs = true;
    int64_t flipped = 0;
    std::vector<PreferenceExample> examples = to_examples(*model, rows, all_refs, flipped);
    ctx.log_metric("data/pairs", static_cast<double>(examples.size()));
    ctx.log_metric("data/flipped_pairs", static_cast<double>(flipped));

    std::vector<PreferenceExample> eval;
    bool eval_refs = true;
    if (ctx.options().has("eval_data")) {
      std::shared_ptr<Plugin> eh;
      DataContext ectx = DataContext::for_stage(ctx, "eval_data/");
      int64_t unused = 0;
      eval = to_examples(*model, load_dataset(ctx, "eval_data", "preference", eh).preference_rows(ectx), eval_refs, unused);
    }

    std::shared_ptr<LanguageModel> live;
    std::string mode = reference_;
    if (!loss_needs_reference(pref_.loss.type)) mode = "none";
    else if (mode == "auto") mode = all_refs && eval_refs ? "rows" : "initial";
    Trainer trainer(ctx, *model, config_);
    if (mode == "initial") {
      // Only the pairs the run will visit (max_steps may end it before an epoch is through).
      initial_reference(ctx, *model, examples, trainer.examples_seen(static_cast<int64_t>(examples.size())),
                        "reference_logps.json");
      if (!eval.empty()) initial_reference(ctx, *model, eval, std::vector<bool>(eval.size(), true), "eval_reference_logps.json");
    }
    if (mode == "live") live = live_reference(ctx, model);
    ctx.log().info("{}: {} pairs, loss {}, beta {}, reference {}", ctx.stage_name(), examples.size(), pref_.loss.type,
                   pref_.loss.beta, mode);

    trainer.fit(static_cast<int64_t>(examples.size()), [&](const std::vector<int64_t>& idx) {
      std::vector<const PreferenceExample*> part;
      for (int64_t i : idx) part.push_back(&examples[static_cast<size_t>(i)]);
      PreferenceOutputs out = preference_forward(*model, part, pref_, live.get());
      MicroBatch mb;
      mb.loss = out.loss.loss;
      mb.tokens = out.tokens;
      mb.metrics = out.metrics();
      return mb;
    });
    if (!eval.empty()) evaluate(ctx, *model, eval, live.get());
  }

 private:
  // Held-out pairs after training: reward accuracy and margin against the reference, and the loss.
  void evaluate(StageContext& ctx, LanguageModel& model, const std::vector<PreferenceExample>& eval, LanguageModel* live) {
    torch::NoGradGuard no_grad;
    model.set_training(false);
    double correct = 0, margin = 0, loss = 0;
    for (size_t i = 0; i < eval.size(); i += static_cast<size_t>(config_.batch_size)) {
      std::vector<const PreferenceExample*> part;
      for (size_t j = i; j < std::min(eval.size(), i + static_cast<size_t>(config_.batch_size)); ++j) part.push_back(&eval[j]);
      const PreferenceOutputs out = preference_forward(model, part, pref_, live);
      const auto c = out.loss.chosen_rewards.to(torch::kFloat64), r = out.loss.rejected_rewards.to(torch::kFloat64);
      correct += (c > r).sum().item<double>();
      margin += (c - r).sum().item<double>();
      loss += out.loss.losses.to(torch::kFloat64).sum().item<double>();
    }
    const double n = static_cast<double>(eval.size());
    ctx.log_metric("eval/rewards/accuracy", correct / n);
    ctx.log_metric("eval/rewards/margin", margin / n);
    ctx.log_metric("eval/loss", loss / n);
    ctx.log().info("held-out pairs: reward accuracy {:.3f}, margin {:.4f}, loss {:.4f} ({} pairs)", correct / n,
                   margin / n, loss / n, eval.size());
  }

  std::vector<PreferenceExample> to_examples(LanguageModel& model, const std::vector<PreferenceRow>& rows,
                                             bool& all_refs, int64_t& flipped) {
    std::vector<PreferenceExample> examples;
    for (const auto& row : rows) {
      PreferenceExample e;
      e.chosen = keep_last_reply(model.encode(side_sample(row, true)));
      e.rejected = keep_last_reply(model.encode(side_sample(row, false)));
      if (row.ref_win_logp && row.ref_rej_logp) e.ref_chosen = *row.ref_win_logp, e.ref_rejected = *row.ref_rej_logp;
      if (row.ref_win_avg_logp && row.ref_rej_avg_logp)
        e.ref_chosen_mean = *row.ref_win_avg_logp, e.ref_rejected_mean = *row.ref_rej_avg_logp;
      const bool has = pref_.use_average ? !std::isnan(e.ref_chosen_mean) : !std::isnan(e.ref_chosen);
      if (!has) {
        all_refs = false;
        if (reference_ == "rows")
          throw DataError(fmt::format("{}:{}: pair '{}' has no reference log-probs ({}); add a reference_logps stage "
                                      "or set reference: initial", row.origin.file, row.origin.row, row.id,
                                      pref_.use_average ? "ref_win_avg_logp/ref_rej_avg_logp" : "ref_win_logp/ref_rej_logp"));
      }
      flipped += row.flipped ? 1 : 0;
      examples.push_back(std::move(e));
    }
    return examples;
  }

  // Reference log-probs from the model before training, cached in the stage folder for a resumed run.
  void initial_reference(StageContext& ctx, LanguageModel& model, std::vector<PreferenceExample>& examples,
                         const std::vector<bool>& needed, const std::string& file) {
    const fs::path cache = ctx.stage_dir() / file;
    std::ifstream in(cache);
    if (in) {
      try {
        const json j = json::parse(in);
        if (j.at("trial") == ctx.trial_identity() && j.at("sum").size() == examples.size()) {
          auto num = [](const json& v) { return v.is_null() ? std::nan("") : v.get<double>(); };  // null: not needed
          for (size_t i = 0; i < examples.size(); ++i) {
            examples[i].ref_chosen = num(j["sum"][i][0]), examples[i].ref_rejected = num(j["sum"][i][1]);
            examples[i].ref_chosen_mean = num(j["mean"][i][0]), examples[i].ref_rejected_mean = num(j["mean"][i][1]);
          }
          ctx.log().info("reference log-probs: reusing {}", cache.string());
          return;
        }
      } catch (const std::exception& e) {
        ctx.log().warn("reference log-probs cache {} unreadable ({}); computing again", cache.string(), e.what());
      }
    }
    std::vector<PreferenceExample*> todo;
    for (size_t i = 0; i < examples.size(); ++i)
      if (needed[i]) todo.push_back(&examples[i]);
    const int64_t batches = (static_cast<int64_t>(todo.size()) + config_.batch_size - 1) / config_.batch_size;
    auto progress = ctx.progress("reference log-probs", batches);
    compute_reference(model, todo, config_.batch_size, [&] {
      progress->advance();
      if (ctx.stop_requested()) throw Interrupted();
    }, pref_.prefix_sharing);
    progress->finish();
    json j = {{"trial", ctx.trial_identity()}, {"sum", json::array()}, {"mean", json::array()}};
    for (const auto& e : examples) {
      j["sum"].push_back({e.ref_chosen, e.ref_rejected});
      j["mean"].push_back({e.ref_chosen_mean, e.ref_rejected_mean});
    }
    write_file_atomic(cache, j.dump() + "\n");
  }

  // The policy itself (run with its adapters disabled), or the frozen `reference_model`.
  std::shared_ptr<LanguageModel> live_reference(StageContext& ctx, const std::shared_ptr<LanguageModel>& policy) {
    if (cfg_.reference_model.IsNull()) return policy;
    std::shared_ptr<Plugin> plugin = ctx.create(PluginKind::Model, cfg_.reference_model);
    auto* lm = dynamic_cast<LanguageModel*>(plugin.get());
    if (!lm) throw ConfigError(ctx.options().where("reference_model") + "reference_model: not a language model");
    lm->set_training(false);
    return std::shared_ptr<LanguageModel>(plugin, lm);
  }

  Config cfg_;
  TrainConfig config_;
  PreferenceConfig pref_;
  std::string reference_;
};

}  // namespace
}  // namespace mmr::train

MMR_PLUGIN(Algorithm, "dpo", "1.0", mmr::train::Dpo)
