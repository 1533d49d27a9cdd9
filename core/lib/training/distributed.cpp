// c10d rendezvous and collectives for the trainer; see distributed.h.
#include "distributed.h"

#include <fmt/format.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
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
    : impl_(new Impl), backend_(backend), device_(device), rank_(env.rank) {
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
  const torch::Tensor buffer = torch::cat(flat_parts);
  start_sum(buffer)();
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(buffer.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

std::function<void()> ProcessGroup::start_sum(torch::Tensor flat) {
  auto failed = [backend = backend_](const std::exception& e) {
    return Error(fmt::format("data-parallel all-reduce ({}) failed (another rank died or timed out?): {}", backend,
                             e.what()));
  };
  // The wait of a started collective (its work type differs between backends and LibTorch versions).
  auto waiter = [&failed](auto work) -> std::function<void()> {
    return [work, failed] {
      try {
        work->wait();
      } catch (const std::exception& e) {
        throw failed(e);
      }
    };
  };
  std::vector<torch::Tensor> buffer = {std::move(flat)};
  try {
#ifdef MMR_HAVE_NCCL
    if (impl_->nccl) return waiter(impl_->nccl->allreduce(buffer));
#endif
#ifdef MMR_HAVE_GLOO
    if (impl_->gloo) return waiter(impl_->gloo->allreduce(buffer));
#endif
  } catch (const std::exception& e) {
    throw failed(e);
  }
  return [] {};
}

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params, int64_t bucket_bytes)
    : group_(group), params_(std::move(params)), where_(params_.size()), final_(params_.size(), false),
      bucket_bytes_(bucket_bytes) {
  std::vector<size_t> reverse(params_.size());
  for (size_t k = 0; k < reverse.size(); ++k) reverse[k] = reverse.size() - 1 - k;
  layout(reverse);
  // A post hook of each parameter's gradient accumulator, as DDP's reducer has: it runs once the backward pass has
  // added the gradient to .grad. Not a tensor hook (register_hook): since LibTorch 2.0 that also runs when the
  // parameter is an input of autograd::grad, which a recomputed layer's backward calls (modules.cpp,
  // CheckpointedLayer), so each layer's gradient arrived twice.
  for (size_t k = 0; k < params_.size(); ++k) {
    std::shared_ptr<torch::autograd::Node> acc = torch::autograd::impl::grad_accumulator(params_[k]);
    if (!acc) throw Error(fmt::format("data parallel: parameter {} does not require a gradient", k));
    hooks_.push_back(acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, k](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_grad(k);
          return outputs;
        })));
    accumulators_.push_back(std::move(acc));
  }
}

void GradientReducer::layout(const std::vector<size_t>& order) {
  std::vector<int64_t> sizes;  // of the buckets, in float32 elements
  for (size_t k : order) {
    if (sizes.empty() || sizes.back() * 4 >= bucket_bytes_) sizes.push_back(0);
    where_[k] = {sizes.size() - 1, sizes.back()};
    sizes.back() += params_[k].numel();
  }
  const torch::Device device = params_.empty() ? torch::Device(torch::kCPU) : params_.front().device();
  buckets_.clear();
  for (int64_t n : sizes) buckets_.push_back({torch::zeros({n}, torch::dtype(torch::kFloat32).device(device)), 0, {}});
}

// Every rank takes rank 0's order (sent as each parameter's position; the others add zeros); parameters that
// got no gradient in the first step go last.
void GradientReducer::learn_order() {
  const size_t n = params_.size();
  std::vector<double> position(n, 0.0);
  if (group_.rank() == 0) {
    std::vector<bool> placed(n, false);
    size_t next = 0;
    for (size_t k : seen_) position[k] = static_cast<double>(next++), placed[k] = true;
    for (size_t k = 0; k < n; ++k)
      if (!placed[k]) position[k] = static_cast<double>(next++);
  }
  std::vector<torch::Tensor> t = {torch::tensor(position, torch::kFloat64)};
  group_.allreduce_sum(t);
  const torch::Tensor summed = t[0].to(torch::kCPU, torch::kFloat64);
  std::vector<size_t> order(n);
  for (size_t k = 0; k < n; ++k) order[static_cast<size_t>(summed[static_cast<int64_t>(k)].item<double>())] = k;
  layout(order);
  learnt_ = true;
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hooks_.size(); ++k) accumulators_[k]->del_post_hook(hooks_[k]);
}

torch::Tensor GradientReducer::slot(size_t i) const {
  const auto& [b, offset] = where_[i];
  return buckets_[b].flat.narrow(0, offset, params_[i].numel()).view(params_[i].sizes());
}

void GradientReducer::arm() {
  std::lock_guard<std::mutex> lock(mu_);
  std::fill(final_.begin(), final_.end(), false);
  for (auto& b : buckets_) b.waiting = 0, b.wait = {};
  for (const auto& [b, offset] : where_) ++buckets_[b].waiting;
  next_ = 0;
  armed_ = true;
}

// The hook runs after the gradient was added to .grad, which then holds the final one (earlier micro-batches
// included).
void GradientReducer::on_grad(size_t i) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) return;
  if (final_[i])
    throw Error(fmt::format("data parallel: parameter {} received a second gradient in one backward pass after its "
                            "bucket was complete; the gradient reducer cannot sum it", i));
  mark_final(i, params_[i].grad());
}

void GradientReducer::mark_final(size_t i, const torch::Tensor& total) {
  torch::NoGradGuard no_grad;
  slot(i).copy_(total);
  final_[i] = true;
  if (!learnt_) seen_.push_back(i);
  --buckets_[where_[i].first].waiting;
  if (learnt_) start_ready();  // the first step: everything at finish(), in the constructor's order
}

void GradientReducer::start_ready() {
  while (next_ < buckets_.size() && buckets_[next_].waiting == 0) {
    buckets_[next_].wait = group_.start_sum(buckets_[next_].flat);
    ++next_;
  }
}

void GradientReducer::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  started_in_backward_ = next_;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (final_[i]) continue;
    const torch::Tensor& acc = params_[i].grad();
    mark_final(i, acc.defined() ? acc : torch::zeros_like(params_[i]));
  }
  start_ready();
  armed_ = false;
  for (auto& b : buckets_) b.wait();
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!params_[i].grad().defined()) params_[i].mutable_grad() = torch::zeros_like(params_[i]);
      params_[i].mutable_grad().copy_(slot(i));
    }
  }
  if (!learnt_) learn_order();
}

}  // namespace mmr::train
