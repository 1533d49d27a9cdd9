// A stage on several data-parallel ranks; see ranks.h.
#include "core/ranks.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "core/lib/util/atomic_file.h"
#include "core/lib/util/strings.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/stage_context.h"

namespace mmr {
namespace {

using json = nlohmann::json;

json request_json(const RankRequest& r) {
  YAML::Emitter options;
  options << r.options;
  json artifacts = json::object();
  for (const auto& [k, v] : r.artifacts) artifacts[k] = v.string();
  json paths = json::array();
  for (const auto& p : r.plugin_paths) paths.push_back(p.string());
  return {{"experiment", r.experiment}, {"source", r.source.string()}, {"trial", r.trial_identity},
          {"seed", r.seed}, {"stage", r.stage.name}, {"kind", kind_name(r.stage.kind)},
          {"plugin", r.stage.plugin}, {"options", options.c_str()}, {"stage_dir", r.stage_dir.string()},
          {"artifacts", artifacts}, {"results_db", r.results_db.string()}, {"plugin_paths", paths},
          {"world", r.stage.ranks}};
}

fs::path result_path(const fs::path& stage_dir, int rank) {
  return stage_dir / "ranks" / fmt::format("result-{}.json", rank);
}

// Rank r's GPU: the stage's device r, read as an index into this process's own CUDA_VISIBLE_DEVICES when it has
// one (a --jobs worker's share), else as given.
std::string rank_device(const StageSpec& stage, int r) {
  const std::string d = stage.devices[static_cast<size_t>(r)];
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!visible || !*visible || d.find_first_not_of("0123456789") != std::string::npos) return d;
  const std::vector<std::string_view> list = python_split(visible, ',');
  const size_t i = std::stoul(d);
  return i < list.size() ? std::string(list[i]) : d;
}

// Inside a Slurm allocation of several nodes (or with MMR_RANKS_LAUNCHER=srun) the ranks are one srun step across
// the allocation: Slurm places them (one GPU each when the allocation has GPUs), SLURM_PROCID and SLURM_NTASKS
// give each its rank and the world size, and the rendezvous is on this host (the batch host, where task 0 runs).
bool launch_with_srun() {
  const char* launcher = std::getenv("MMR_RANKS_LAUNCHER");
  if (launcher && *launcher) return std::string(launcher) == "srun";
  const char* nodes = std::getenv("SLURM_JOB_NUM_NODES");
  return std::getenv("SLURM_JOB_ID") && nodes && std::atoi(nodes) > 1;
}

pid_t start_srun(const RankRequest& r, const fs::path& request_file, spdlog::logger& log) {
  const std::string host = host_name() == "unknown" ? "localhost" : host_name(), port = std::to_string(free_loopback_port());
  std::vector<std::string> argv = {"srun", fmt::format("--ntasks={}", r.stage.ranks), "--kill-on-bad-exit=1",
                                   "--label", "--export=ALL"};
  const char* gpus = std::getenv("SLURM_GPUS_ON_NODE");
  if (gpus && std::atoi(gpus) > 0) argv.push_back("--gpus-per-task=1");
  argv.insert(argv.end(), {fs::read_symlink("/proc/self/exe").string(), "_stage-rank", request_file.string()});
  std::vector<std::pair<std::string, std::string>> env = {
      {"MASTER_ADDR", host}, {"MASTER_PORT", port}, {"MMR_LOG_TAG", child_log_tag("rank")}, {"MMR_RANK_FROM_SLURM", "1"}};
  // Each rank its node's share of the cores, as for local ranks (Slurm's cpus per task when the job says).
  if (!std::getenv("OMP_NUM_THREADS")) {
    const char* per_task = std::getenv("SLURM_CPUS_PER_TASK");
    const char* nodes_env = std::getenv("SLURM_JOB_NUM_NODES");
    const int nodes = std::max(1, nodes_env ? std::atoi(nodes_env) : 1);
    const int per_node = (r.stage.ranks + nodes - 1) / nodes;
    const int threads = per_task ? std::atoi(per_task) : static_cast<int>(std::thread::hardware_concurrency()) / per_node;
    env.emplace_back("OMP_NUM_THREADS", std::to_string(std::max(1, threads)));
  }
  pid_t pid = 0;
  const int err = spawn_process(pid, "srun", argv, env);
  if (err != 0) throw Error(fmt::format("stage '{}': cannot start srun: {}", r.stage.name, std::strerror(err)));
  log.info("stage '{}': {} data-parallel ranks through srun (pid {}), rendezvous at {}:{}", r.stage.name,
           r.stage.ranks, pid, host, port);
  return pid;
}

std::vector<pid_t> start_ranks(const RankRequest& r, const fs::path& request_file, spdlog::logger& log) {
  if (launch_with_srun()) return {start_srun(r, request_file, log)};
  const int world = r.stage.ranks;
  const std::string port = std::to_string(free_loopback_port());
  std::vector<pid_t> pids;
  for (int k = 0; k < world; ++k) {
    std::vector<std::pair<std::string, std::string>> env = {
        {"RANK", std::to_string(k)}, {"WORLD_SIZE", std::to_string(world)}, {"MASTER_ADDR", "127.0.0.1"},
        {"MASTER_PORT", port}, {"MMR_LOG_TAG", child_log_tag(fmt::format("rank {}/{}", k, world))}};
    if (!r.stage.devices.empty()) env.emplace_back("CUDA_VISIBLE_DEVICES", rank_device(r.stage, k));
    // Without `devices:` the ranks share whatever GPU they see, which NCCL refuses: the trainer's collectives
    // then default to Gloo (core/lib/training/distributed.h, choose_backend).
    else env.emplace_back("MMR_RANKS_SHARE_DEVICES", "1");
    // Each rank its share of the cores unless the user chose (torchrun does the same): with a thread per core in
    // every rank, the CPU work of a step (image preprocessing, collation) held two H200s' DPO step at 1.70x one
    // GPU's speed; with half the cores each, 1.90x (tools/bench/dp_scaling.sh).
    if (!std::getenv("OMP_NUM_THREADS"))
      env.emplace_back("OMP_NUM_THREADS", std::to_string(std::max(1u, std::thread::hardware_concurrency() / world)));
    pids.push_back(spawn_self({"_stage-rank", request_file.string()}, env));
  }
  log.info("stage '{}': {} data-parallel ranks (pids {}), rendezvous at 127.0.0.1:{}", r.stage.name, world,
           fmt::join(pids, ", "), port);
  return pids;
}

struct RanksEnded {
  std::vector<int> status;      // each rank's exit status (128 + signal for a killed one)
  std::vector<int> first_down;  // the ranks that failed first (seen in the same poll): where the trouble began
};

// Waits for every rank. When one fails (or a stop is requested) the others get SIGTERM, and SIGKILL 30 s later.
RanksEnded wait_ranks(const std::vector<pid_t>& pids) {
  RanksEnded out;
  std::vector<int>& status = out.status;
  status.assign(pids.size(), -1);
  std::optional<std::chrono::steady_clock::time_point> terminated;
  for (size_t left = pids.size(); left > 0; std::this_thread::sleep_for(std::chrono::milliseconds(100))) {
    for (size_t k = 0; k < pids.size(); ++k) {
      int ws = 0;
      if (status[k] >= 0 || waitpid(pids[k], &ws, WNOHANG) != pids[k]) continue;
      status[k] = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
      if (status[k] > 0 && !terminated) out.first_down.push_back(static_cast<int>(k));
      --left;
    }
    const bool failed = !out.first_down.empty();
    if ((failed || stop_flag()) && !terminated) {
      for (size_t k = 0; k < pids.size(); ++k)
        if (status[k] < 0) kill(pids[k], SIGTERM);
      terminated = std::chrono::steady_clock::now();
    }
    if (terminated && std::chrono::steady_clock::now() - *terminated > std::chrono::seconds(30))
      for (size_t k = 0; k < pids.size(); ++k)
        if (status[k] < 0) kill(pids[k], SIGKILL);
  }
  return out;
}

std::string exit_text(int status) {
  if (status <= 128) return fmt::format("exit status {}", status);
  const char* name = sigabbrev_np(status - 128);
  return fmt::format("killed by signal {}{}", status - 128, name ? fmt::format(" (SIG{})", name) : "");
}

json read_result(const fs::path& stage_dir, int rank) {
  std::ifstream in(result_path(stage_dir, rank));
  if (!in) return json::object();
  try {
    return json::parse(in);
  } catch (const std::exception&) {
    return json::object();
  }
}

RankResult rank0_result(const json& j) {
  RankResult out;
  for (const auto& m : j["metrics"])
    out.metrics.push_back({m["name"].get<std::string>(), m["step"].get<int64_t>(), m["value"].get<double>()});
  for (const auto& a : j["artifacts"]) out.artifacts.emplace_back(a["name"], fs::path(a["path"].get<std::string>()));
  return out;
}

}  // namespace

RankResult run_stage_ranks(const RankRequest& r, spdlog::logger& log) {
  const fs::path request_file = r.stage_dir / "ranks" / "request.json";
  fs::create_directories(request_file.parent_path());
  for (int k = 0; k < r.stage.ranks; ++k) fs::remove(result_path(r.stage_dir, k));
  write_file_atomic(request_file, request_json(r).dump(2) + "\n");
  const RanksEnded ended = wait_ranks(start_ranks(r, request_file, log));
  // The error reported is the rank where the trouble began: of the ranks that failed first, one that died without
  // a result (killed, crashed) before one that failed with an error (often only because its peer was gone). Ranks
  // the runner stopped after that are consequences, not causes; a stop the user asked for is an interruption.
  // Under srun there is one process (srun) to wait for: every rank is a candidate, in rank order.
  std::vector<int> candidates = ended.first_down;
  const bool one_launcher = ended.status.size() == 1 && r.stage.ranks > 1;
  if (one_launcher && !candidates.empty())
    for (int k = 0; k < r.stage.ranks; ++k) candidates.push_back(k);
  std::string error;
  for (bool want_dead : {true, false})
    for (int k : candidates) {
      const json res = read_result(r.stage_dir, k);
      const bool dead = !res.contains("status");
      if (res.value("status", "") == "finished" || !error.empty() || dead != want_dead) continue;
      const int status = ended.status[one_launcher ? 0 : static_cast<size_t>(k)];
      error = fmt::format("rank {} of {} {}", k, r.stage.ranks,
                          dead ? "ended without a result (" + exit_text(status) + ")"
                          : res["status"] == "interrupted" ? std::string("was stopped by a signal")
                                                           : "failed: " + res.value("error", std::string()));
    }
  if (stop_flag()) throw Interrupted();
  if (!error.empty()) throw Error(error + (r.stage.ranks > 1 ? "; the other ranks were stopped" : ""));
  return rank0_result(read_result(r.stage_dir, 0));
}

namespace {

// Runs the plugin of the request on this rank; fills `result` (status, error and, on rank 0, what it produced).
void run_rank(const json& req, json& result) {
  Registry registry;
  std::vector<fs::path> paths;
  for (const auto& p : req["plugin_paths"]) paths.emplace_back(p.get<std::string>());
  registry.scan_default(paths);
  Experiment exp;
  exp.name = req["experiment"];
  exp.source = req["source"].get<std::string>();
  Trial trial;
  trial.identity = req["trial"];
  trial.seed = req["seed"];
  StageSpec stage;
  stage.name = req["stage"];
  stage.plugin = req["plugin"];
  for (auto k : {PluginKind::Algorithm, PluginKind::Benchmark, PluginKind::Dataset})
    if (req["kind"] == kind_name(k)) stage.kind = k;
  std::map<std::string, fs::path> artifacts;
  for (const auto& [k, v] : req["artifacts"].items()) artifacts[k] = v.get<std::string>();
  const PluginInfo& info = registry.find(stage.kind, stage.plugin);
  // ${env:...} is read here, from this rank's environment (the request file holds the references only).
  const Options options(resolve_env(YAML::Load(req["options"].get<std::string>())), exp.source.string());
  Store store(req["results_db"].get<std::string>());
  StageContextImpl ctx(exp, trial, stage, options, req["stage_dir"].get<std::string>(), spdlog::default_logger(),
                       registry, artifacts, store);
  std::shared_ptr<Plugin> plugin = registry.create(info, options);
  call_plugin(info, [&] {
    as_stage_runner(stage.kind, plugin.get())->run(ctx);
    return 0;
  });
  if (stop_flag()) throw Interrupted();
  result["status"] = "finished";
  for (const auto& m : ctx.metrics_) result["metrics"].push_back({{"name", m.name}, {"step", m.step}, {"value", m.value}});
  for (const auto& [name, path] : ctx.artifacts_) result["artifacts"].push_back({{"name", name}, {"path", path.string()}});
}

}  // namespace

int stage_rank_main(const fs::path& request_json) {
  const char* rank_env = std::getenv("RANK");  // torchrun's, or Slurm's in the runner's srun step
  if (!rank_env && std::getenv("MMR_RANK_FROM_SLURM")) rank_env = std::getenv("SLURM_PROCID");
  const int rank = rank_env ? std::atoi(rank_env) : 0;
  json req;
  {
    std::ifstream in(request_json);
    req = json::parse(in);  // written by the runner that started this process
  }
  json result = {{"status", "failed"}, {"metrics", json::array()}, {"artifacts", json::array()}};
  try {
    run_rank(req, result);
  } catch (const Interrupted&) {
    result["status"] = "interrupted";
  } catch (const std::exception& e) {
    result["error"] = redact_secrets(e.what());
    spdlog::error("stage '{}': {}", req.value("stage", std::string()), e.what());
  }
  if (rank != 0 && result["status"] == "finished") result["metrics"] = result["artifacts"] = json::array();
  write_file_atomic(result_path(req["stage_dir"].get<std::string>(), rank), result.dump() + "\n");
  return result["status"] == "finished" ? 0 : result["status"] == "interrupted" ? 130 : 1;
}

}  // namespace mmr
