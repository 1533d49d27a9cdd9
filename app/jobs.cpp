// Worker processes of `runner --jobs N`. See jobs.h.
#include "app/jobs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/runner.h"

extern char** environ;

namespace mmr::jobs {

std::vector<std::string> parse_devices(const std::string& list) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    const std::string item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty()) throw std::invalid_argument(fmt::format("--devices '{}': expected a list like 0,1,2", list));
    out.push_back(item);
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
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

// The current environment with `extra` entries added (replacing any of the same name).
std::vector<std::string> environment_with(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    const std::string entry = *e;
    bool replaced = false;
    for (const auto& [name, value] : extra) replaced = replaced || entry.rfind(name + "=", 0) == 0;
    if (!replaced) env.push_back(entry);
  }
  for (const auto& [name, value] : extra) env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Starts worker k of n with this program and `args`; the worker gets no blocked signals (the runner blocks
// SIGINT/SIGTERM in its own threads, and posix_spawn would pass that mask on).
pid_t spawn_worker(const JobsOptions& o, int k) {
  std::vector<std::pair<std::string, std::string>> extra = {{"MMR_JOB", fmt::format("{}/{}", k + 1, o.jobs)}};
  const std::vector<std::string> devices = devices_of_worker(o.devices, o.jobs, k);
  if (!devices.empty()) extra.emplace_back("CUDA_VISIBLE_DEVICES", fmt::format("{}", fmt::join(devices, ",")));
  std::vector<std::string> env = environment_with(extra);
  std::vector<std::string> argv = {"/proc/self/exe"};
  argv.insert(argv.end(), o.worker_args.begin(), o.worker_args.end());
  std::vector<char*> c_argv = c_strings(argv), c_env = c_strings(env);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, &attr, c_argv.data(), c_env.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error(fmt::format("cannot start worker {}: {}", k + 1, std::strerror(rc)));
  spdlog::info("job {}/{}: pid {}{}", k + 1, o.jobs, pid,
               devices.empty() ? "" : fmt::format(", devices {}", fmt::join(devices, ",")));
  return pid;
}

// A worker's exit as the run's status: its exit code, or 1 for a worker killed by a signal (said in the log).
int worker_status(int k, int jobs, pid_t pid, int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  const int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  spdlog::error("job {}/{} (pid {}) was killed by signal {}: its trial in flight is left interrupted; run the "
                "experiment again to finish it", k + 1, jobs, pid, sig);
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
