// Worker processes of `runner --jobs N`. See jobs.h.
#include "app/jobs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <thread>

#include "core/lib/util/strings.h"
#include "core/runner.h"
#include "core/spawn.h"

namespace mmr::jobs {

std::vector<std::string> parse_devices(const std::string& list) {
  std::vector<std::string> out;
  for (std::string_view item : python_split(list, ',')) {
    if (item.empty()) throw std::invalid_argument(fmt::format("--devices '{}': expected a list like 0,1,2", list));
    out.emplace_back(item);
  }
  return out;
}

std::vector<std::string> devices_of_worker(const std::vector<std::string>& pool, int jobs, int k) {
  if (pool.empty()) return {};
  const int n = static_cast<int>(pool.size());
  if (n < jobs) return {pool[static_cast<size_t>(k % n)]};
  std::vector<std::string> mine;
  for (int i = k; i < n; i += jobs) mine.push_back(pool[static_cast<size_t>(i)]);
  return mine;
}

namespace {

// Starts worker k of n: this runner with the worker's arguments, its log tag and its share of the devices.
pid_t spawn_worker(const JobsOptions& o, int k) {
  std::vector<std::pair<std::string, std::string>> env = {{"MMR_LOG_TAG", fmt::format("job {}/{}", k + 1, o.jobs)}};
  const std::vector<std::string> devices = devices_of_worker(o.devices, o.jobs, k);
  if (!devices.empty()) env.emplace_back("CUDA_VISIBLE_DEVICES", fmt::format("{}", fmt::join(devices, ",")));
  const pid_t pid = spawn_self(o.worker_args, env);
  spdlog::info("job {}/{}: pid {}{}", k + 1, o.jobs, pid,
               devices.empty() ? "" : fmt::format(", devices {}", fmt::join(devices, ",")));
  return pid;
}

// A worker's exit as the run's status: its exit code, or 1 for a worker killed by a signal (said in the log).
int worker_status(int k, int jobs, pid_t pid, int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  const int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  spdlog::error("job {}/{} (pid {}) was killed by signal {}: the workers still running take over its trial in "
                "flight (when none is left, a rerun finishes it)", k + 1, jobs, pid, sig);
  return 1;
}

}  // namespace

int run_workers(const JobsOptions& o) {
  std::vector<pid_t> pids;
  for (int k = 0; k < o.jobs; ++k) pids.push_back(spawn_worker(o, k));
  std::vector<int> status(pids.size(), -1);
  bool forwarded = false;
  for (size_t left = pids.size(); left > 0;) {
    if (stop_flag() && !forwarded) {  // SIGTERM to this process only: pass it on (Ctrl-C reaches the group)
      for (size_t k = 0; k < pids.size(); ++k)
        if (status[k] < 0) kill(pids[k], SIGTERM);
      forwarded = true;
    }
    for (size_t k = 0; k < pids.size(); ++k) {
      int ws = 0;
      if (status[k] >= 0 || waitpid(pids[k], &ws, WNOHANG) != pids[k]) continue;
      status[k] = worker_status(static_cast<int>(k), o.jobs, pids[k], ws);
      --left;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int worst = 0;
  for (int s : status) worst = std::max(worst, s);
  return stop_flag() || worst == 130 ? 130 : worst;
}

}  // namespace mmr::jobs
