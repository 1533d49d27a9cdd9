// Data-parallel training over LibTorch's c10d: which rank this process is (from the variables torchrun and Slurm
// set), and a process group that sums tensors across the ranks. The trainer (trainer.h) uses it to shard each
// step's examples by rank and to all-reduce the gradients, so N processes train as one process with an N times
// larger micro-batch. c10d's headers stay in distributed.cpp.
#pragma once

#include <torch/torch.h>

#include <chrono>
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
  const std::string& backend() const { return backend_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string backend_;
  torch::Device device_;
};

}  // namespace mmr::train
