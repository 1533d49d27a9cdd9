// The training loop every algorithm plugin shares (DESIGN §6): AdamW with its own learning rate for the projector,
// warmup + cosine/linear/constant schedule, gradient accumulation, gradient clipping, per-layer activation
// recomputation, epochs or max steps, deterministic data order, per-step metrics into the results store, atomic
// checkpoints every N steps and resume from the latest one after a crash or an interrupt.
//
// An algorithm gives the loop the number of examples and a function that computes the loss of one micro-batch
// (a list of example indices). Everything else — order, accumulation, optimizer, schedule, logging, checkpoints —
// is here, so every algorithm trains the same way.
//
// Data parallel (distributed.h): started as rank r of W processes (torchrun's or Slurm's variables), each
// micro-batch of the step is W x batch_size examples of which rank r computes the r-th slice; the gradients, the
// loss and the metrics are summed over the ranks, each rank's part weighted by its share of the micro-batch, so W
// ranks at batch_size b train as one process at W x b. Rank 0 alone logs, checkpoints and writes the adapter.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/api/model_api.h"
#include "core/api/options.h"
#include "core/api/plugin_api.h"
#include "distributed.h"

namespace mmr::train {

// The paper's defaults differ per algorithm (DPO lr 5e-5, SFT 4e-4, ...): each algorithm passes its own.
struct TrainDefaults {
  double lr = 5e-5, projector_lr = 2e-5;
  int64_t epochs = 3, batch_size = 8, grad_accum = 4;
  double warmup_ratio = 0.03;
};

// The loop's options, declared once each in bind() with an algorithm's defaults.
struct TrainConfig {
  double lr;
  double projector_lr;       // the model's `projector` parameter group; < 0: same as lr
  double weight_decay;
  double adam_beta1, adam_beta2, adam_eps;
  std::string scheduler;     // cosine | linear | constant
  double warmup_ratio;
  int64_t warmup_steps;      // > 0 overrides warmup_ratio
  int64_t epochs;
  int64_t max_steps;         // > 0 overrides epochs
  int64_t batch_size;        // examples per micro-batch
  int64_t grad_accum;        // micro-batches per optimizer step
  double max_grad_norm;      // 0: no clipping
  bool gradient_checkpointing;
  int64_t save_every;        // steps between checkpoints (0: only when interrupted)
  int64_t keep_checkpoints;
  bool resume;
  bool keep_final_checkpoint;  // checkpoints are deleted once the adapter is written, unless true
  int64_t dist_timeout_s;      // data parallel: how long a rank waits for the others
  std::string dist_backend;    // data parallel: auto | nccl | gloo (named: the collective path even at 1 rank)

  explicit TrainConfig(const TrainDefaults& defaults = {});
  void bind(OptionBinder& o, const TrainDefaults& defaults);
};

// The learning-rate factor at optimizer step `step` (0-based) of `total`, with `warmup` warmup steps — the
// schedules of transformers' get_{cosine,linear,constant}_schedule_with_warmup.
double lr_factor(const std::string& scheduler, int64_t step, int64_t warmup, int64_t total);

// AdamW over the model's parameter groups: the group named `projector` at projector_lr, the others at lr.
std::unique_ptr<torch::optim::AdamW> make_optimizer(const std::vector<ParameterGroup>& groups, const TrainConfig& config);

struct MicroBatch {
  torch::Tensor loss;                      // scalar: this micro-batch's loss (a mean over its examples/tokens)
  int64_t tokens = 0;                      // tokens processed (tokens/s)
  double weight = -1;                      // what `loss` is a mean over (labelled tokens of a token-mean loss);
                                           // < 0: the examples. Data-parallel ranks are weighted by it
  std::map<std::string, double> metrics;   // algorithm metrics (averaged over the step's micro-batches)
};
using MicroBatchFn = std::function<MicroBatch(const std::vector<int64_t>& examples)>;

struct FitResult {
  int64_t steps = 0;
  std::map<std::string, double> last;  // the last step's metrics
  std::filesystem::path adapter;       // where the trained adapter was written
};

class Trainer {
 public:
  Trainer(StageContext& ctx, LanguageModel& model, TrainConfig config);
  // Trains on examples 0..n-1 and writes the adapter (artifact `adapter`, folder <stage>/adapter). Resumes from
  // <stage>/checkpoints when a checkpoint of this trial is there.
  FitResult fit(int64_t num_examples, const MicroBatchFn& fn);
  int64_t total_steps(int64_t num_examples) const;
  // Which examples the run will visit (all of them unless max_steps ends it early), for work done once per example
  // before training (reference log-probs).
  std::vector<bool> examples_seen(int64_t num_examples) const;

 private:
  struct Schedule {
    int64_t batches_per_epoch = 0, steps_per_epoch = 0, total = 0, warmup = 0;
  };
  struct StepOutcome {
    double micro = 0, loss_sum = 0;              // micro-batches in the step, the sum of their losses
    int64_t tokens = 0;
    std::map<std::string, double> metric_sum;    // algorithm metrics summed over the micro-batches
  };
  Schedule schedule(int64_t num_examples) const;
  StepOutcome accumulate(int64_t step, const Schedule& sched, const std::vector<int64_t>& order, const MicroBatchFn& fn);
  double clip_gradients();
  bool sync_step(StepOutcome& outcome);  // data parallel: sums the outcome; true when a rank stops
  double rank_share(double weight);      // data parallel: weight / (sum over the ranks)
  void join_ranks();                     // data parallel: the rendezvous (group_)
  int64_t global_batch() const { return cfg_.batch_size * dist_.world; }
  void log_step(int64_t step, const StepOutcome& outcome, double lr, double grad_norm, double secs,
                const Schedule& sched, FitResult& result);
  void write_adapter(FitResult& result);
  void save_checkpoint(int64_t step, const torch::optim::AdamW& opt);
  int64_t load_checkpoint(torch::optim::AdamW& opt);  // the step to continue from (0: nothing to resume)
  void log(const std::string& name, double value, int64_t step);

  StageContext& ctx_;
  LanguageModel& model_;
  TrainConfig cfg_;
  std::vector<ParameterGroup> groups_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;  // every tensor of groups_, named
  std::vector<nlohmann::json> history_;  // every metric logged so far ({name, value, step}), kept in checkpoints
  int64_t num_examples_ = 0;
  DistributedEnv dist_;
  std::unique_ptr<ProcessGroup> group_;        // when dist_.world > 1, made in fit()
  std::unique_ptr<GradientReducer> reducer_;   // with group_: sums the gradients during the last backward pass
  int64_t reduced_steps_ = 0;
};

// The examples of micro-batch `index` of `epoch` in a deterministic order (a permutation seeded by seed and epoch).
std::vector<int64_t> epoch_order(int64_t num_examples, uint64_t seed, int64_t epoch);

}  // namespace mmr::train
