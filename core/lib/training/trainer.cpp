// The shared training loop; see trainer.h.
#include "trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

#include "core/api/error.h"
#include "core/lib/safetensors/safetensors.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/kill_point.h"

namespace mmr::train {

namespace fs = std::filesystem;
namespace st = mmr::safetensors;
using json = nlohmann::json;

namespace {

bool has_adapter(const std::vector<ParameterGroup>& groups) {
  for (const auto& g : groups)
    if (g.name == "lora" && !g.params.empty()) return true;
  return false;
}

std::string step_dir_name(int64_t step) { return fmt::format("step-{:07d}", step); }

// The trainable tensors as float32 safetensors under their PEFT-style names.
void write_trainable(const std::vector<std::pair<std::string, torch::Tensor>>& params, const fs::path& path) {
  st::Writer writer;
  std::vector<torch::Tensor> keep;  // CPU copies the writer borrows
  for (const auto& [name, t] : params) {
    torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
    keep.push_back(c);
    writer.add_borrowed(name, st::Dtype::F32, std::vector<int64_t>(c.sizes().begin(), c.sizes().end()),
                        c.data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float));
  }
  writer.write(path.string());
}

}  // namespace

TrainConfig::TrainConfig(const TrainDefaults& defaults) {
  OptionBinder declare;
  bind(declare, defaults);
}

void TrainConfig::bind(OptionBinder& o, const TrainDefaults& d) {
  o.bind("lr", &lr, d.lr, "learning rate of the LoRA weights");
  o.bind("projector_lr", &projector_lr, d.projector_lr, "learning rate of the projector (when the model trains it); < 0: lr");
  o.bind("weight_decay", &weight_decay, 0.0, "AdamW decoupled weight decay");
  o.bind("adam_beta1", &adam_beta1, 0.9, "AdamW beta1");
  o.bind("adam_beta2", &adam_beta2, 0.999, "AdamW beta2");
  o.bind("adam_eps", &adam_eps, 1.0e-8, "AdamW epsilon");
  o.one_of("scheduler", &scheduler, "cosine", {"cosine", "linear", "constant"}, "learning-rate schedule after warmup");
  o.bind("warmup_ratio", &warmup_ratio, d.warmup_ratio, "share of the steps spent warming up linearly from 0");
  o.bind("warmup_steps", &warmup_steps, 0, "warmup steps (> 0 overrides warmup_ratio)");
  o.bind("epochs", &epochs, d.epochs, "passes over the data");
  o.bind("max_steps", &max_steps, 0, "optimizer steps (> 0 overrides epochs)");
  o.bind("batch_size", &batch_size, d.batch_size, "examples per micro-batch");
  o.bind("grad_accum", &grad_accum, d.grad_accum, "micro-batches per optimizer step");
  o.bind("max_grad_norm", &max_grad_norm, 1.0, "clip the global gradient norm to this (0: no clipping)");
  o.bind("gradient_checkpointing", &gradient_checkpointing, true, "recompute each decoder layer in the backward pass (less memory)");
  o.bind("save_every", &save_every, 50, "steps between checkpoints (0: only when interrupted)");
  o.bind("keep_checkpoints", &keep_checkpoints, 1, "how many recent checkpoints to keep");
  o.bind("resume", &resume, true, "continue from this trial's latest checkpoint when there is one");
  o.bind("keep_final_checkpoint", &keep_final_checkpoint, false, "keep the last checkpoint after the adapter is written");
  o.bind("dist_timeout_s", &dist_timeout_s, 1800, "data-parallel runs: seconds a rank waits for the others before "
         "the stage fails (torch.distributed's default: 30 min)");
  o.one_of("dist_backend", &dist_backend, "auto", {"auto", "nccl", "gloo"}, "data-parallel collectives: auto is NCCL "
           "for a model on a GPU (CUDA builds), Gloo on the CPU; ranks sharing one GPU need gloo. Named explicitly, a "
           "single process also trains through the collective path (a group of one)");
  o.check(lr > 0, "lr", "must be positive");
  o.check(batch_size >= 1, "batch_size", "must be at least 1");
  o.check(grad_accum >= 1, "grad_accum", "must be at least 1");
  o.check(epochs >= 1 || max_steps >= 1, "epochs", "give epochs >= 1 or max_steps >= 1");
  o.check(warmup_ratio >= 0 && warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)");
  o.check(keep_checkpoints >= 1, "keep_checkpoints", "must be at least 1");
}

double lr_factor(const std::string& scheduler, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  if (scheduler == "constant") return 1.0;
  const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (scheduler == "linear") return std::max(0.0, 1.0 - progress);
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));  // cosine, half a cycle
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(const std::vector<ParameterGroup>& groups, const TrainConfig& c) {
  std::vector<torch::Tensor> rest, projector;
  for (const auto& group : groups)
    for (const auto& [name, t] : group.params) (group.name == "projector" ? projector : rest).push_back(t);
  auto opts = [&](double lr) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr)
                                                            .betas({c.adam_beta1, c.adam_beta2})
                                                            .eps(c.adam_eps)
                                                            .weight_decay(c.weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  if (!rest.empty()) param_groups.emplace_back(rest, opts(c.lr));
  if (!projector.empty()) param_groups.emplace_back(projector, opts(c.projector_lr < 0 ? c.lr : c.projector_lr));
  MMR_CHECK(!param_groups.empty(), "make_optimizer: no parameters");
  return std::make_unique<torch::optim::AdamW>(param_groups, torch::optim::AdamWOptions(c.lr));
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(epoch) * 7919ULL + 17);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher–Yates with our own draw, identical on every platform
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

Trainer::Trainer(StageContext& ctx, LanguageModel& model, TrainConfig config)
    : ctx_(ctx), model_(model), cfg_(std::move(config)), groups_(model.parameter_groups()),
      params_(model.trainable_parameters()), dist_(distributed_env()) {
  if (params_.empty())
    throw ConfigError("stage '" + ctx.stage_name() + "': the model reports no trainable parameters; give its model "
                      "node a new adapter, an adapter to continue, or trainable modules (`runner plugins --kind model` "
                      "lists the model's options)");
}

int64_t Trainer::total_steps(int64_t n) const {
  const int64_t batches = (n + global_batch() - 1) / global_batch();
  const int64_t per_epoch = (batches + cfg_.grad_accum - 1) / cfg_.grad_accum;
  return cfg_.max_steps > 0 ? cfg_.max_steps : cfg_.epochs * per_epoch;
}

std::vector<bool> Trainer::examples_seen(int64_t n) const {
  std::vector<bool> seen(static_cast<size_t>(n), false);
  const int64_t batches_per_epoch = (n + global_batch() - 1) / global_batch();
  const int64_t steps_per_epoch = (batches_per_epoch + cfg_.grad_accum - 1) / cfg_.grad_accum;
  const int64_t total = total_steps(n);
  for (int64_t epoch = 0; epoch * steps_per_epoch < total; ++epoch) {
    const int64_t steps = std::min(steps_per_epoch, total - epoch * steps_per_epoch);
    const int64_t examples = std::min(n, steps * cfg_.grad_accum * global_batch());
    const auto order = epoch_order(n, ctx_.seed(), epoch);
    for (int64_t i = 0; i < examples; ++i) seen[static_cast<size_t>(order[static_cast<size_t>(i)])] = true;
    if (examples == n) break;
  }
  return seen;
}

void Trainer::log(const std::string& name, double value, int64_t step) {
  if (dist_.rank != 0) return;
  ctx_.log_metric(name, value, step);
  history_.push_back({{"name", name}, {"value", value}, {"step", step}});
}

void Trainer::save_checkpoint(int64_t step, const torch::optim::AdamW& opt) {
  if (dist_.rank != 0) return;  // every rank holds the same weights and optimizer state
  const fs::path root = ctx_.stage_dir() / "checkpoints";
  const fs::path tmp = root / (step_dir_name(step) + ".tmp"), final_dir = root / step_dir_name(step);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_trainable(params_, tmp / "trainable.safetensors");
  kill_point("ckpt.after_weights");  // between the checkpoint's files
  torch::save(opt, (tmp / "optimizer.pt").string());
  kill_point("ckpt.after_optimizer");
  std::vector<torch::Tensor> rng = {at::detail::getDefaultCPUGenerator().get_state()};
  if (model_.device().is_cuda()) rng.push_back(at::globalContext().defaultGenerator(model_.device()).get_state());
  torch::save(rng, (tmp / "rng.pt").string());
  if (has_adapter(groups_)) model_.save_adapter(tmp / "adapter");
  kill_point("ckpt.after_adapter");
  const json state = {{"step", step},
                      {"trial", ctx_.trial_identity()},
                      {"stage", ctx_.stage_name()},
                      {"num_examples", num_examples_},
                      {"total_steps", total_steps(num_examples_)},
                      {"history", history_}};
  write_file_atomic(tmp / "state.json", state.dump() + "\n");
  kill_point("ckpt.before_rename");  // the whole step folder written under its .tmp name
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  kill_point("ckpt.before_latest");
  write_file_atomic(root / "latest", step_dir_name(step) + "\n");
  kill_point("ckpt.before_prune");
  // Keep the newest keep_checkpoints.
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0 && e.path().extension() != ".tmp")
      dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  for (size_t i = 0; i + static_cast<size_t>(cfg_.keep_checkpoints) < dirs.size(); ++i) fs::remove_all(dirs[i]);
  ctx_.log().info("checkpoint: step {} -> {}", step, final_dir.string());
}

int64_t Trainer::load_checkpoint(torch::optim::AdamW& opt) {
  const fs::path root = ctx_.stage_dir() / "checkpoints";
  std::ifstream latest_in(root / "latest");
  std::string name;
  if (!latest_in || !(latest_in >> name)) return 0;
  const fs::path dir = root / name;
  json state;
  try {
    std::ifstream in(dir / "state.json");
    state = json::parse(in);
  } catch (const std::exception& e) {
    ctx_.log().warn("checkpoint {} is unreadable ({}); training from the start", dir.string(), e.what());
    return 0;
  }
  if (state.value("trial", "") != ctx_.trial_identity() || state.value("stage", "") != ctx_.stage_name() ||
      state.value("num_examples", int64_t{-1}) != num_examples_ ||
      state.value("total_steps", int64_t{-1}) != total_steps(num_examples_)) {
    ctx_.log().warn("checkpoint {} belongs to another configuration; training from the start", dir.string());
    return 0;
  }
  const st::SafetensorsFile f = st::SafetensorsFile::open((dir / "trainable.safetensors").string());
  {
    torch::NoGradGuard no_grad;
    for (auto& [pname, t] : params_) {
      f.expect_shape(pname, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
      std::vector<float> v = f.to_float32(pname);
      t.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat32));
    }
  }
  torch::load(opt, (dir / "optimizer.pt").string());
  std::vector<torch::Tensor> rng;
  torch::load(rng, (dir / "rng.pt").string());
  if (!rng.empty()) at::Generator(at::detail::getDefaultCPUGenerator()).set_state(rng[0]);
  if (rng.size() > 1 && model_.device().is_cuda()) at::Generator(at::globalContext().defaultGenerator(model_.device())).set_state(rng[1]);
  // The new attempt's record gets the whole metric history, so its curves start at step 1.
  for (const auto& m : state["history"]) log(m["name"].get<std::string>(), m["value"].get<double>(), m["step"].get<int64_t>());
  const int64_t step = state["step"].get<int64_t>();
  ctx_.log().info("resuming from checkpoint {} (step {})", dir.string(), step);
  return step;
}

// One optimizer step's forward and backward passes: the step's micro-batches in the epoch's order, each loss
// divided by the step's number of micro-batches (as HF's gradient accumulation does). Data parallel: this rank's
// slice of each micro-batch, weighted by its share of what the micro-batch's loss is a mean over (its examples,
// or MicroBatch::weight), so the summed gradient is that of the whole micro-batch's mean; a rank whose slice is
// empty (the last, short micro-batch) runs one example at weight 0, so every rank takes part in every collective.
Trainer::StepOutcome Trainer::accumulate(int64_t step, const Schedule& sched, const std::vector<int64_t>& order,
                                         const MicroBatchFn& fn) {
  const int64_t in_epoch = step % sched.steps_per_epoch;
  const int64_t first = in_epoch * cfg_.grad_accum;
  const int64_t last = std::min(first + cfg_.grad_accum, sched.batches_per_epoch);
  StepOutcome out;
  out.micro = static_cast<double>(last - first);
  for (int64_t b = first; b < last; ++b) {
    const int64_t lo = b * global_batch(), hi = std::min(lo + global_batch(), num_examples_);
    const int64_t mine_lo = std::min(lo + dist_.rank * cfg_.batch_size, hi);
    const int64_t mine_hi = std::min(mine_lo + cfg_.batch_size, hi);
    std::vector<int64_t> idx(order.begin() + mine_lo, order.begin() + mine_hi);
    const bool empty = idx.empty();
    if (empty) idx = {order[static_cast<size_t>(hi - 1)]};
    MicroBatch mb = fn(idx);
    const double share = !group_ ? 1.0 : rank_share(empty ? 0.0 : mb.weight >= 0 ? mb.weight : idx.size());
    const bool reduce = reducer_ && b + 1 == last;  // the step's last backward: sum gradients as they are final
    if (reduce) reducer_->arm();
    (!group_ ? mb.loss / out.micro : mb.loss * (share / out.micro)).backward();
    if (reduce) {
      reducer_->finish();
      if (++reduced_steps_ == 2)  // the first step learnt the order; from the second, buckets overlap backward
        ctx_.log().info("data parallel: {} of {} gradient buckets were summed during the backward pass",
                        reducer_->started_in_backward(), reducer_->buckets());
    }
    out.loss_sum += mb.loss.item<double>() * share;
    out.tokens += share > 0 ? mb.tokens : 0;
    for (const auto& [k, v] : mb.metrics) out.metric_sum[k] += v * share;
  }
  return out;
}

void Trainer::join_ranks() {
  ctx_.log().info("data parallel: rank {} of {}, rendezvous at {}:{}", dist_.rank, dist_.world, dist_.master_addr,
                  dist_.master_port);
  const torch::Device device = params_.front().second.device();
  group_ = std::make_unique<ProcessGroup>(dist_, choose_backend(cfg_.dist_backend, device), device,
                                          std::chrono::seconds(cfg_.dist_timeout_s));
  std::vector<torch::Tensor> tensors;
  for (const auto& [name, t] : params_) tensors.push_back(t);
  reducer_ = std::make_unique<GradientReducer>(*group_, tensors);
  ctx_.log().info("data parallel: {} collectives on {}; gradients summed in buckets during the backward pass",
                  group_->backend(), device.str());
}

// This rank's `weight` over the sum of all ranks' (0 when every rank's is 0).
double Trainer::rank_share(double weight) {
  std::vector<torch::Tensor> total = {torch::tensor({weight}, torch::kFloat64)};
  group_->allreduce_sum(total);
  const double sum = total[0].item<double>();
  return sum > 0 ? weight / sum : 0.0;
}

// The step's loss, tokens, metrics and stop requests summed over the ranks (the gradients were, in accumulate()).
bool Trainer::sync_step(StepOutcome& o) {
  std::vector<torch::Tensor> tensors;
  std::vector<double> scalars = {o.loss_sum, static_cast<double>(o.tokens), ctx_.stop_requested() ? 1.0 : 0.0};
  for (const auto& [k, v] : o.metric_sum) scalars.push_back(v);
  tensors.push_back(torch::tensor(scalars, torch::kFloat64));
  group_->allreduce_sum(tensors);
  const torch::Tensor summed = tensors.back().to(torch::kCPU);
  o.loss_sum = summed[0].item<double>();
  o.tokens = static_cast<int64_t>(summed[1].item<double>());
  int64_t i = 3;
  for (auto& [k, v] : o.metric_sum) v = summed[i++].item<double>();
  return summed[2].item<double>() > 0;
}

// The global gradient norm before clipping (what is logged), and the gradients scaled down to max_grad_norm.
double Trainer::clip_gradients() {
  std::vector<torch::Tensor> grads;
  for (const auto& [name, t] : params_)
    if (t.grad().defined()) grads.push_back(t.grad());
  if (grads.empty()) return 0;
  std::vector<torch::Tensor> norms;
  for (const auto& g : grads) norms.push_back(g.detach().to(torch::kFloat32).norm());
  const double grad_norm = torch::stack(norms).norm().item<double>();
  if (cfg_.max_grad_norm > 0 && grad_norm > cfg_.max_grad_norm) {
    const double scale = cfg_.max_grad_norm / (grad_norm + 1e-6);
    for (auto& g : grads) g.mul_(scale);
  }
  return grad_norm;
}

void Trainer::log_step(int64_t s, const StepOutcome& o, double lr, double grad_norm, double secs,
                       const Schedule& sched, FitResult& result) {
  const double loss = o.loss_sum / o.micro;
  log("train/loss", loss, s);
  log("train/lr", lr, s);
  log("train/grad_norm", grad_norm, s);
  log("train/tokens_per_s", secs > 0 ? static_cast<double>(o.tokens) / secs : 0.0, s);
  log("train/epoch", static_cast<double>(s) / static_cast<double>(sched.steps_per_epoch), s);
  result.last = {{"train/loss", loss}, {"train/grad_norm", grad_norm}};
  for (const auto& [k, v] : o.metric_sum) {
    log("train/" + k, v / o.micro, s);
    result.last["train/" + k] = v / o.micro;
  }
}

// The trained weights as the artifact `adapter`: a PEFT adapter when the model has one, else the trained tensors.
void Trainer::write_adapter(FitResult& result) {
  result.adapter = ctx_.stage_dir() / "adapter";
  if (has_adapter(groups_)) {
    const fs::path tmp = ctx_.stage_dir() / "adapter.tmp";  // a folder: written whole, then swapped in
    fs::remove_all(tmp);
    model_.save_adapter(tmp);
    kill_point("train.adapter_written");  // adapter.tmp whole, the artifact folder not yet replaced
    fs::remove_all(result.adapter);
    kill_point("train.adapter_removed");  // the old folder gone, the new one not yet in place
    fs::rename(tmp, result.adapter);
  } else {
    fs::create_directories(result.adapter);
    write_trainable(params_, result.adapter / "trainable.safetensors");
  }
  ctx_.add_artifact("adapter", result.adapter);
}

Trainer::Schedule Trainer::schedule(int64_t n) const {
  Schedule s;
  s.batches_per_epoch = (n + global_batch() - 1) / global_batch();
  s.steps_per_epoch = (s.batches_per_epoch + cfg_.grad_accum - 1) / cfg_.grad_accum;
  s.total = total_steps(n);
  s.warmup = cfg_.warmup_steps > 0 ? cfg_.warmup_steps
                                   : static_cast<int64_t>(std::ceil(cfg_.warmup_ratio * static_cast<double>(s.total)));
  return s;
}

// The loop, top to bottom: order, learning rate, forward + backward, clip, step, log, checkpoint.
FitResult Trainer::fit(int64_t n, const MicroBatchFn& fn) {
  MMR_CHECK(n > 0, "fit: no examples to train on");
  num_examples_ = n;
  const Schedule sched = schedule(n);
  auto opt = make_optimizer(groups_, cfg_);
  std::vector<double> base_lr;
  for (auto& g : opt->param_groups()) base_lr.push_back(static_cast<torch::optim::AdamWOptions&>(g.options()).lr());

  torch::manual_seed(ctx_.seed());  // dropout; a resumed run restores the generator state from its checkpoint
  if (dist_.world > 1 || cfg_.dist_backend != "auto") join_ranks();
  const int64_t start = cfg_.resume ? load_checkpoint(*opt) : 0;
  ctx_.log().info("training: {} examples, {} steps ({} per epoch; micro-batch {} x accumulation {}{}), warmup {}, "
                  "{} schedule, {} trainable tensors", n, sched.total, sched.steps_per_epoch, cfg_.batch_size,
                  cfg_.grad_accum, dist_.world > 1 ? fmt::format(" x {} ranks", dist_.world) : "", sched.warmup,
                  cfg_.scheduler, params_.size());
  model_.set_training(true);
  model_.set_activation_checkpointing(cfg_.gradient_checkpointing);
  auto progress = ctx_.progress("train", sched.total);
  if (start > 0) progress->advance(start);
  FitResult result;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  for (int64_t step = start; step < sched.total; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t epoch = step / sched.steps_per_epoch;
    if (epoch != order_epoch) order = epoch_order(n, ctx_.seed(), epoch), order_epoch = epoch;
    const double factor = lr_factor(cfg_.scheduler, step, sched.warmup, sched.total);
    for (size_t g = 0; g < opt->param_groups().size(); ++g)
      static_cast<torch::optim::AdamWOptions&>(opt->param_groups()[g].options()).lr(base_lr[g] * factor);

    opt->zero_grad();
    StepOutcome outcome = accumulate(step, sched, order, fn);
    const bool stopping = group_ ? sync_step(outcome) : ctx_.stop_requested();
    const double grad_norm = clip_gradients();
    if (!std::isfinite(grad_norm))
      throw Error(fmt::format("step {}: the gradient norm is {} (loss {}); lower lr or check the data", step + 1,
                              grad_norm, outcome.loss_sum / outcome.micro));
    opt->step();
    kill_point("train.after_step");  // a step taken but neither logged nor checkpointed
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const int64_t s = step + 1;
    log_step(s, outcome, base_lr[0] * factor, grad_norm, secs, sched, result);
    progress->set_postfix(fmt::format("loss {:.4f}", outcome.loss_sum / outcome.micro));
    progress->advance();
    if (stopping || (cfg_.save_every > 0 && s % cfg_.save_every == 0 && s < sched.total)) save_checkpoint(s, *opt);
    if (stopping) {
      ctx_.log().warn("training stopped after step {} (checkpoint saved; a rerun resumes from it)", s);
      throw Interrupted();
    }
  }
  progress->finish();
  model_.set_activation_checkpointing(false);
  model_.set_training(false);

  result.steps = sched.total;
  if (dist_.rank != 0) return result;  // rank 0 writes what the stage produced
  kill_point("train.before_adapter");
  write_adapter(result);
  kill_point("train.after_adapter");
  if (!cfg_.keep_final_checkpoint) fs::remove_all(ctx_.stage_dir() / "checkpoints");
  for (const auto& [k, v] : result.last) ctx_.log_metric(k, v);  // final values (step -1)
  return result;
}

}  // namespace mmr::train
