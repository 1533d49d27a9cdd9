// The Slurm executor. See slurm.h.
#include "app/slurm.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "core/runner.h"
#include "core/spawn.h"
#include "core/store.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmr::slurm {
namespace {

struct Output {
  int status = -1;
  std::string text;  // stdout and stderr together
};

// Runs a Slurm client command (sbatch, squeue) and returns its exit status and output.
Output run_command(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe(fds) != 0) throw IoError("slurm: cannot make a pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const int err = spawn_process(pid, argv[0], argv, {}, &actions);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  Output out;
  if (err != 0) {
    close(fds[0]);
    throw Error(fmt::format("slurm: cannot run {}: {} (is Slurm's client installed and on PATH?)", argv[0],
                            std::strerror(err)));
  }
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;)
    if (n > 0) out.text.append(buf, static_cast<size_t>(n));
    else if (errno != EINTR) break;
  close(fds[0]);
  int ws = 0;
  while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  out.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return out;
}

// A word for `sh -c` (sbatch --wrap): single-quoted.
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string safe_name(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return out;
}

json read_ledger(const fs::path& dir) {
  std::ifstream in(dir / "job.json");
  if (!in) return json::object();
  try {
    return json::parse(in);
  } catch (const std::exception&) {
    throw DataError(fmt::format("{}: not a job ledger the runner wrote (remove the folder to start the trial's "
                                "job afresh)", (dir / "job.json").string()));
  }
}

void write_ledger(const fs::path& dir, const json& j) { write_file_atomic(dir / "job.json", j.dump(2) + "\n"); }

// Slurm's states in which a job will not run again by itself.
bool terminal(const std::string& state) {
  static const std::set<std::string> done = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                             "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT"};
  return done.count(state) > 0;
}

// job id -> state of this user's jobs that Slurm still lists (finished ones for MinJobAge).
std::map<std::string, std::string> squeue_states() {
  const Output o = run_command({"squeue", "--me", "-h", "-t", "all", "-o", "%A %T"});
  if (o.status != 0) throw Error("slurm: squeue failed: " + o.text);
  std::map<std::string, std::string> states;
  std::istringstream in(o.text);
  for (std::string id, state; in >> id >> state;) states[id] = state;
  return states;
}

struct Job {
  const Trial* trial;
  fs::path dir;
  json ledger;
};

// Submits the trial's job; `after` is the pilot's job id ("" for none). Returns the job id.
std::string submit(Job& job, const Experiment& exp, const SlurmOptions& o, const std::string& after,
                   const std::vector<std::string>& command) {
  std::string wrapped = "exec";
  for (const auto& w : command) wrapped += " " + shell_quote(w);
  std::vector<std::string> argv = {"sbatch", "--parsable", "--requeue", "--open-mode=append",
                                   fmt::format("--job-name=mmr-{}-{}", safe_name(exp.name), job.trial->ordinal),
                                   "--output=" + (job.dir / "slurm-%j.out").string()};
  if (!o.partition.empty()) argv.push_back("--partition=" + o.partition);
  if (!o.time.empty()) argv.push_back("--time=" + o.time);
  if (o.gpus_per_trial > 0) argv.push_back(fmt::format("--gpus={}", o.gpus_per_trial));
  if (!after.empty()) argv.push_back("--dependency=afterany:" + after);
  argv.insert(argv.end(), o.sbatch_args.begin(), o.sbatch_args.end());
  argv.push_back("--wrap=" + wrapped);
  const Output out = run_command(argv);
  const std::string id = out.text.substr(0, out.text.find_first_of(";\n"));
  if (out.status != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw Error(fmt::format("slurm: sbatch refused trial {} ({}): {}", job.trial->ordinal, job.trial->label, out.text));
  job.ledger["job_id"] = id;
  job.ledger["submissions"] = job.ledger.value("submissions", 0) + 1;
  job.ledger["submitted_at"] = now_iso8601();
  write_ledger(job.dir, job.ledger);
  spdlog::info("trial {} ({}): slurm job {}{}", job.trial->ordinal, job.trial->label.empty() ? "-" : job.trial->label,
               id, after.empty() ? "" : " (after the pilot, job " + after + ")");
  return id;
}

// The trial's status in its job's store file ("" when the job wrote none yet).
std::string job_trial_status(const Job& job, const Experiment& exp) {
  const fs::path store = job.dir / "store.db";
  if (!fs::exists(store)) return "";
  Store s(store, Store::Mode::ReadOnly);
  for (const TrialSummary& t : s.trials(exp.name))
    if (t.identity == job.trial->identity) return t.status;
  return "";
}

}  // namespace

fs::path job_dir(const fs::path& results_db, const Experiment& exp, const Trial& trial) {
  return fs::absolute(results_db).parent_path() / "slurm" / safe_name(exp.name) /
         fmt::format("{}-{}", trial.ordinal, trial.identity.substr(0, 12));
}

int run_on_slurm(const Experiment& exp, const fs::path& results_db, const SlurmOptions& o,
                 const std::function<std::vector<std::string>(const fs::path&)>& job_command) {
  Store store(results_db);
  const int64_t exp_id = store.upsert_experiment(exp.name, fs::absolute(exp.source).string(), exp.text);
  std::map<std::string, std::string> recorded;
  for (const auto& t : exp.trials) recorded[t.identity] = store.ensure_trial(exp_id, t).status;
  const auto states = squeue_states();

  // What each trial needs: nothing (finished, or its ended job finished it: merged now), a wait (its job is
  // queued or running), or a job (new, or its last job ended without finishing it; a failed trial runs again, as
  // in a local rerun).
  std::vector<Job> jobs;
  std::vector<size_t> to_submit;  // indices into jobs
  for (const auto& t : exp.trials) {
    if (recorded[t.identity] == "finished") continue;
    Job job{&t, job_dir(results_db, exp, t), json::object()};
    job.ledger = read_ledger(job.dir);
    const std::string id = job.ledger.value("job_id", "");
    const auto it = states.find(id);
    if (!id.empty() && it != states.end() && !terminal(it->second)) {
      spdlog::info("trial {}: slurm job {} is {}; following it, not submitting it again", t.ordinal, id, it->second);
    } else {
      const std::string ended = id.empty() ? "" : job_trial_status(job, exp);
      if (ended == "finished" || ended == "failed") {
        store.import_trial(job.dir / "store.db", exp.name, t.identity);
        spdlog::info("trial {}: {} in slurm job {}; merged", t.ordinal, ended, id);
        if (ended == "finished") continue;
      }
      to_submit.push_back(jobs.size());
    }
    jobs.push_back(job);
  }
  if (jobs.empty()) {
    spdlog::info("experiment '{}': every trial has finished; nothing to submit", exp.name);
    return 0;
  }
  // A snapshot of the results database: what every job starts from (finished stages are reused).
  if (!to_submit.empty()) {
    const fs::path seed = job_dir(results_db, exp, exp.trials.front()).parent_path() / "seed.db";
    fs::create_directories(seed.parent_path());
    fs::remove(seed);
    store.snapshot_to(seed);
    std::string pilot;
    for (size_t k : to_submit) {
      Job& job = jobs[k];
      fs::create_directories(job.dir);
      json seeds = json::array();
      if (!pilot.empty()) seeds.push_back((jobs[to_submit.front()].dir / "published.db").string());
      seeds.push_back(seed.string());
      job.ledger = {{"experiment", exp.name}, {"identity", job.trial->identity}, {"ordinal", job.trial->ordinal},
                    {"seeds", seeds}, {"submissions", job.ledger.value("submissions", 0)}};
      const std::string id = submit(job, exp, o, pilot, job_command(job.dir));
      if (pilot.empty() && to_submit.size() > 1) pilot = id;
    }
  }
  if (!o.wait) {
    spdlog::info("experiment '{}': {} job(s) submitted; `runner status` follows them, and a rerun of this command "
                 "merges their results", exp.name, to_submit.size());
    return 0;
  }

  // Follow the jobs: merge each one's store when it ends; submit again one that ended with its trial unfinished.
  int failed = 0;
  std::map<const Trial*, int> resubmitted;  // in this run
  int squeue_failures = 0;                  // in a row
  std::string last_line;
  while (!jobs.empty()) {
    if (stop_flag()) {
      spdlog::warn("stopped following: {} slurm job(s) are still queued or running; rerun this command to collect "
                   "them", jobs.size());
      return 130;
    }
    std::map<std::string, std::string> now;
    try {
      now = squeue_states();
      squeue_failures = 0;
    } catch (const std::exception& e) {  // slurmctld restarting, a network hiccup: the jobs go on meanwhile
      if (++squeue_failures > 10) throw;
      spdlog::warn("{} (try {} of 10; polling again in {} s)", e.what(), squeue_failures, o.poll_s);
      std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(o.poll_s * 1000)));
      continue;
    }
    std::map<std::string, int> count;
    for (auto it = jobs.begin(); it != jobs.end();) {
      const std::string id = it->ledger.value("job_id", "");
      const auto st = now.find(id);
      const std::string state = st == now.end() ? "ENDED" : st->second;
      if (!terminal(state) && state != "ENDED") {
        ++count[state];
        ++it;
        continue;
      }
      const std::string trial_status = job_trial_status(*it, exp);
      const std::string log = (it->dir / fmt::format("slurm-{}.out", id)).string();
      if (trial_status == "finished" || trial_status == "failed") {
        store.import_trial(it->dir / "store.db", exp.name, it->trial->identity);
        spdlog::info("trial {}: {} (slurm job {} {}); merged", it->trial->ordinal, trial_status, id, state);
        failed += trial_status == "failed";
        it = jobs.erase(it);
      } else if (resubmitted[it->trial]++ < o.retries) {
        spdlog::warn("trial {}: slurm job {} ended ({}) before the trial did (its log: {}); submitting it again (it "
                     "resumes from its store and checkpoints)", it->trial->ordinal, id, state, log);
        submit(*it, exp, o, "", job_command(it->dir));
        ++it;
      } else {
        const std::string error = fmt::format("slurm job {} ended ({}) before the trial did, {} times in this run; its "
                                              "log: {}", id, state, o.retries + 1, log);
        store.import_trial(it->dir / "store.db", exp.name, it->trial->identity);
        store.fail_trial(exp.name, it->trial->identity, error);
        spdlog::error("trial {}: {}; giving up (a rerun submits it again)", it->trial->ordinal, error);
        ++failed;
        it = jobs.erase(it);
      }
    }
    std::string line;
    for (const auto& [state, n] : count) line += fmt::format("{}{} {}", line.empty() ? "" : ", ", n, state);
    if (!line.empty() && line != last_line) spdlog::info("slurm: {}", line);
    last_line = line;
    if (!jobs.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(o.poll_s * 1000)));
  }
  return failed > 0 ? 1 : 0;
}

void publish_job(const JobPlan& plan) {
  const fs::path dir = plan.store.parent_path(), tmp = dir / "published.db.tmp";
  fs::remove(tmp);
  Store(plan.store).snapshot_to(tmp);
  fs::rename(tmp, dir / "published.db");
}

JobPlan prepare_job(const fs::path& dir) {
  const json ledger = read_ledger(dir);
  if (!ledger.contains("identity"))
    throw ConfigError(fmt::format("--slurm-job {}: no job ledger (job.json) there", dir.string()));
  JobPlan plan{ledger["identity"].get<std::string>(), dir / "store.db"};
  if (!fs::exists(plan.store)) {
    // The first seed that exists: the pilot's published store (this job starts after the pilot ended), else the
    // snapshot of the results database. Both are closed files that nobody writes any more: a plain copy, no
    // SQLite connection to a file another host wrote.
    for (const auto& seed : ledger["seeds"]) {
      const fs::path from = seed.get<std::string>();
      if (!fs::exists(from)) continue;
      const fs::path tmp = dir / "store.db.seeding";
      fs::copy_file(from, tmp, fs::copy_options::overwrite_existing);
      fs::rename(tmp, plan.store);
      break;
    }
  }
  Store s(plan.store);  // a new one when there was no seed (the run then creates the tables)
  s.exec("UPDATE trials SET status = 'interrupted', ended_at = '" + now_iso8601() + "' WHERE status = 'running'");
  return plan;
}

std::vector<JobState> job_states(const fs::path& results_db, const std::string& experiment) {
  std::vector<JobState> out;
  const fs::path root = fs::absolute(results_db).parent_path() / "slurm" / safe_name(experiment);
  if (!fs::is_directory(root)) return out;
  std::map<std::string, std::string> states;
  try {
    states = squeue_states();
  } catch (const std::exception&) {
    return out;
  }
  for (const auto& e : fs::directory_iterator(root)) {
    const json ledger = e.is_directory() ? read_ledger(e.path()) : json::object();
    const std::string id = ledger.value("job_id", "");
    if (id.empty()) continue;
    const auto it = states.find(id);
    out.push_back({ledger.value("ordinal", int64_t{0}), id, it == states.end() ? "ENDED" : it->second});
  }
  std::sort(out.begin(), out.end(), [](const JobState& a, const JobState& b) { return a.ordinal < b.ordinal; });
  return out;
}

}  // namespace mmr::slurm
