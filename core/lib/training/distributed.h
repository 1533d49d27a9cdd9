// Data-parallel training over LibTorch's c10d: which rank this process is (from the variables torchrun and Slurm
// set), and a process group that sums tensors across the ranks. The trainer (trainer.h) uses it to shard each
// step's examples by rank and to all-reduce the gradients, so N processes train as one process with an N times
// larger micro-batch. c10d's headers stay in distributed.cpp.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

namespace mmr::train {

struct DistributedEnv {
  int rank = 0;
  int world = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// torchrun's RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; in the srun step the runner starts for a stage's ranks
// (MMR_RANK_FROM_SLURM set), SLURM_PROCID and SLURM_NTASKS stand in for RANK and WORLD_SIZE. Nothing set: rank 0
// of 1. A malformed value is a ConfigError naming the variable.
DistributedEnv distributed_env();

// The collective backend for `requested` ("auto", "nccl" or "gloo") on `device`: auto is NCCL for a GPU when this
// build has it (a CUDA LibTorch with c10d's NCCL) and the ranks do not share a GPU (the runner's ranks of a stage
// without `devices:`), Gloo otherwise. An unavailable one is a ConfigError.
std::string choose_backend(const std::string& requested, const torch::Device& device);
bool have_nccl();

// Rendezvous through a c10d TCPStore served by rank 0, then a process group of `backend` whose collectives run on
// `device` (the model's). Every collective waits at most `timeout`: a rank that died fails the others with an
// error instead of a hang (Gloo notices a closed socket at once; NCCL waits out the timeout).
class ProcessGroup {
 public:
  ProcessGroup(const DistributedEnv& env, const std::string& backend, torch::Device device,
               std::chrono::milliseconds timeout);
  ~ProcessGroup();
  // Sums `tensors` across the ranks in place, as one flat float32 buffer on the group's device (one collective
  // per call); tensors elsewhere (bookkeeping scalars on the CPU) travel with it.
  void allreduce_sum(const std::vector<torch::Tensor>& tensors);
  // Starts summing `flat` (float32, on the group's device) in place across the ranks; call the returned function
  // to wait for it. Ranks must start their sums in the same order.
  std::function<void()> start_sum(torch::Tensor flat);
  const std::string& backend() const { return backend_; }
  int rank() const { return rank_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string backend_;
  torch::Device device_;
  int rank_ = 0;
};

// Sums the gradients of `params` across the ranks while the backward pass still runs, as DDP does: the gradients
// go into buckets of about `bucket_bytes`, in the order backward produces them; in the step's last backward pass
// (arm()), a bucket whose gradients are all final is summed at once — buckets in the same order on every rank —
// while backward goes on with the layers before it. That order is learnt as DDP learns it: the first step sums
// everything at its end and records the order in which gradients became final on rank 0, which every rank then
// builds its buckets from. finish() sums what is left (parameters that got no gradient: zeros, or what earlier
// micro-batches accumulated), waits, and writes the sums into each parameter's .grad. A parameter that receives
// gradient again after it was final is an error, not a wrong sum.
class GradientReducer {
 public:
  GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params, int64_t bucket_bytes = 25 << 20);
  ~GradientReducer();  // removes its hooks from the parameters
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;
  void arm();
  void finish();
  size_t started_in_backward() const { return started_in_backward_; }  // buckets the last finish() found started
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    torch::Tensor flat;
    size_t waiting = 0;          // parameters whose gradient is not final yet
    std::function<void()> wait;  // set once started
  };
  void layout(const std::vector<size_t>& order);  // buckets filled in this order of the parameters
  void learn_order();                              // after the first step: rank 0's order, on every rank
  void on_grad(size_t i);  // parameter i's gradient was accumulated into its .grad
  void mark_final(size_t i, const torch::Tensor& total);  // caller holds mu_
  void start_ready();                                     // caller holds mu_
  torch::Tensor slot(size_t i) const;

  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  std::vector<std::pair<size_t, int64_t>> where_;  // parameter -> (bucket, offset in it)
  std::vector<bool> final_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // the parameters' gradient accumulators
  std::vector<uintptr_t> hooks_;                                      // their post hooks' keys
  int64_t bucket_bytes_;
  std::vector<size_t> seen_;  // the first step: parameters in the order their gradients became final
  bool learnt_ = false;       // buckets follow the learnt order (from the second step on)
  size_t next_ = 0;  // the next bucket to start
  size_t started_in_backward_ = 0;
  bool armed_ = false;
  std::mutex mu_;    // CUDA runs hooks on the autograd engine's device thread
};

}  // namespace mmr::train
