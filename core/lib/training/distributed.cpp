// c10d rendezvous and collectives for the trainer; see distributed.h.
#include "distributed.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// c10d's Gloo header includes Gloo's own, which come with Debian's libgloo-dev but not with PyTorch's wheel
// (tools/gpu_build.sh carries the .deb); a build without them has no data parallelism and says so at run time.
#if __has_include(<gloo/algorithm.h>) && __has_include(<gloo/rendezvous/store.h>)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define MMR_HAVE_GLOO 1
#endif
// NCCL: only in a CUDA LibTorch build (CMake defines USE_C10D_NCCL there when it finds nccl.h).
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define MMR_HAVE_NCCL 1
#endif

#include <cstdlib>

#include "core/api/error.h"

namespace mmr::train {
namespace {

// The integer in environment variable `name`, or `fallback` when it is unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 0 || n > 1 << 20)
    throw ConfigError(fmt::format("environment variable {}='{}': expected a non-negative integer", name, v));
  return static_cast<int>(n);
}

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

}  // namespace

DistributedEnv distributed_env() {
  DistributedEnv e;
  // Slurm's SLURM_PROCID / SLURM_NTASKS only in the srun step the runner starts for a stage's ranks: a batch
  // script has them too (ntasks of the allocation), and a stage without ranks must not wait for peers there.
  const bool slurm = std::getenv("MMR_RANK_FROM_SLURM") != nullptr;
  e.rank = env_int("RANK", slurm ? env_int("SLURM_PROCID", 0) : 0);
  e.world = env_int("WORLD_SIZE", slurm ? env_int("SLURM_NTASKS", 1) : 1);
  if (const char* addr = std::getenv("MASTER_ADDR"); addr && *addr) e.master_addr = addr;
  e.master_port = env_int("MASTER_PORT", e.master_port);
  if (e.world < 1 || e.rank >= e.world)
    throw ConfigError(fmt::format("rank {} of world size {}: expected 0 <= RANK < WORLD_SIZE", e.rank, e.world));
  return e;
}

bool have_nccl() {
#ifdef MMR_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::string choose_backend(const std::string& requested, const torch::Device& device) {
  // The runner's ranks of a stage without `devices:` share one GPU (MMR_RANKS_SHARE_DEVICES), which NCCL refuses.
  const char* shared = std::getenv("MMR_RANKS_SHARE_DEVICES");
  if (requested == "auto") return device.is_cuda() && have_nccl() && !(shared && *shared) ? "nccl" : "gloo";
  if (requested == "nccl" && !device.is_cuda())
    throw ConfigError("dist_backend 'nccl' needs the model on a GPU (its device is " + device.str() + ")");
  if (requested == "nccl" && !have_nccl())
    throw ConfigError("dist_backend 'nccl': this build has no NCCL (build against a CUDA LibTorch with "
                      "tools/gpu_build.sh, or use dist_backend: gloo)");
  return requested;
}

struct ProcessGroup::Impl {
#ifdef MMR_HAVE_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#ifdef MMR_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
};

namespace {

c10::intrusive_ptr<c10d::TCPStore> rendezvous(const DistributedEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.isServer = env.rank == 0;
  store_options.numWorkers = static_cast<size_t>(env.world);
  store_options.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
}

}  // namespace

ProcessGroup::ProcessGroup(const DistributedEnv& env, const std::string& backend, torch::Device device,
                           std::chrono::milliseconds timeout)
    : impl_(new Impl), backend_(backend), device_(device) {
#ifdef MMR_HAVE_NCCL
  if (backend == "nccl") {
    // Blocking wait: a collective whose peer died throws after `timeout` (instead of the watchdog tearing the
    // process down), so the stage fails with our error. The user's own setting wins.
    setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(rendezvous(env, timeout), env.rank, env.world, options);
    return;
  }
#endif
#ifdef MMR_HAVE_GLOO
  if (backend == "gloo") {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // On one host the loopback device; else the interface the master's address is reached through.
    options->devices.push_back(is_loopback(env.master_addr)
                                   ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                   : c10d::ProcessGroupGloo::createDefaultDevice());
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(rendezvous(env, timeout), env.rank, env.world, options);
    return;
  }
  throw ConfigError(fmt::format("rank {} of {}: unknown collective backend '{}'", env.rank, env.world, backend));
#else
  (void)timeout;
  throw ConfigError(fmt::format("rank {} of {}: data-parallel training needs c10d's Gloo backend, and this build had "
                                "no Gloo headers (Debian: libgloo-dev)", env.rank, env.world));
#endif
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::allreduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  std::vector<torch::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.detach().reshape({-1}).to(device_, torch::kFloat32));
  std::vector<torch::Tensor> buffer = {torch::cat(flat_parts)};
  try {
#ifdef MMR_HAVE_NCCL
    if (impl_->nccl) impl_->nccl->allreduce(buffer)->wait();
#endif
#ifdef MMR_HAVE_GLOO
    if (impl_->gloo) impl_->gloo->allreduce(buffer)->wait();
#endif
  } catch (const std::exception& e) {
    throw Error(fmt::format("data-parallel all-reduce ({}) failed (another rank died or timed out?): {}", backend_,
                            e.what()));
  }
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(buffer[0].narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

}  // namespace mmr::train
