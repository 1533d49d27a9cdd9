// The trial scheduler: stages in order, outcomes and metrics committed together, resume and signals.
#include "core/runner.h"

#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "core/lib/util/sha256.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// What the signal watcher needs to record an abort on the second signal.
struct CurrentTrial {
  std::mutex mu;
  fs::path db;
  int64_t trial_id = 0;
  int attempt = 0;
};
CurrentTrial& current() {
  static CurrentTrial c;
  return c;
}

std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

// A file's hash, or for a folder the hash of its sorted "relative path, file hash" list.
ArtifactRow checksum(const std::string& name, const fs::path& path) {
  ArtifactRow row;
  row.name = name;
  row.path = path.string();
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    row.sha256 = sha256_file(path);
    row.bytes = static_cast<int64_t>(fs::file_size(path));
    return row;
  }
  if (!fs::is_directory(path, ec))
    throw Error(fmt::format("artifact '{}' does not exist: {}", name, path.string()));
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Sha256 h;
  for (const auto& f : files) {
    const std::string rel = fs::relative(f, path).string();
    h.update(rel);
    h.update("\0", 1);
    h.update(sha256_file(f));
    h.update("\n", 1);
    row.bytes += static_cast<int64_t>(fs::file_size(f));
  }
  row.sha256 = h.hex_digest();
  return row;
}

class StageContextImpl : public StageContext {
 public:
  StageContextImpl(const Experiment& exp, const Trial& trial, const StageSpec& stage, Options options,
                   fs::path dir, std::shared_ptr<spdlog::logger> log, const Registry& registry,
                   const std::map<std::string, fs::path>& artifacts, Store& store)
      : exp_(exp), trial_(trial), stage_(stage), options_(std::move(options)), dir_(std::move(dir)),
        log_(std::move(log)), registry_(registry), earlier_(artifacts), store_(store) {}

  const std::string& experiment() const override { return exp_.name; }
  const std::string& trial_identity() const override { return trial_.identity; }
  const std::string& stage_name() const override { return stage_.name; }
  uint64_t seed() const override { return trial_.seed; }
  const Options& options() const override { return options_; }
  const fs::path& stage_dir() const override { return dir_; }
  spdlog::logger& log() override { return *log_; }

  void log_metric(const std::string& name, double value, int64_t step) override {
    metrics_.push_back({name, step, value});
  }
  void add_artifact(const std::string& name, const fs::path& path) override {
    const fs::path p = path.is_absolute() ? path : dir_ / path;
    for (auto& a : artifacts_)
      if (a.first == name) {
        a.second = p;
        return;
      }
    artifacts_.emplace_back(name, p);
  }
  fs::path artifact(const std::string& stage, const std::string& name) const override {
    auto it = earlier_.find(stage + "/" + name);
    if (it != earlier_.end()) return it->second;
    std::vector<std::string> have;
    for (const auto& [k, v] : earlier_) have.push_back(k);
    throw ConfigError(fmt::format("stage '{}': no artifact '{}/{}'; earlier stages produced: {}", stage_.name, stage,
                                  name, have.empty() ? "(none)" : fmt::format("{}", fmt::join(have, ", "))));
  }
  std::shared_ptr<Plugin> create(PluginKind kind, const YAML::Node& spec) override {
    if (spec && spec.IsScalar()) return registry_.create(kind, spec.Scalar(), YAML::Node(), exp_.source.string());
    if (!spec || !spec.IsMap() || !spec["plugin"] || !spec["plugin"].IsScalar())
      throw ConfigError(fmt::format("{}stage '{}': expected a {} plugin name, or a map with 'plugin: <name>' and its "
                                    "options", yaml_where(spec, exp_.source.string()), stage_.name, kind_name(kind)));
    YAML::Node opts(YAML::NodeType::Map);
    for (const auto& kv : spec)
      if (kv.first.Scalar() != "plugin") opts[kv.first.Scalar()] = kv.second;
    return registry_.create(kind, spec["plugin"].Scalar(), opts, exp_.source.string());
  }
  std::unique_ptr<ProgressSink> progress(const std::string& label, int64_t total) override {
    return std::make_unique<Progress>(label, total, log_);
  }
  bool stop_requested() const override { return stop_flag().load(); }
  // One SQLite connection serves the whole runner; judges may call from worker threads.
  std::optional<std::string> cached_judgment(const std::string& judge, const std::string& prompt) override {
    std::lock_guard<std::mutex> lock(store_mu_);
    return store_.cached_judgment(judge, prompt);
  }
  void store_judgment(const std::string& judge, const std::string& prompt, const std::string& reply) override {
    std::lock_guard<std::mutex> lock(store_mu_);
    store_.store_judgment(judge, prompt, reply);
  }

  std::vector<MetricRow> metrics_;
  std::vector<std::pair<std::string, fs::path>> artifacts_;

 private:
  const Experiment& exp_;
  const Trial& trial_;
  const StageSpec& stage_;
  Options options_;
  fs::path dir_;
  std::shared_ptr<spdlog::logger> log_;
  const Registry& registry_;
  const std::map<std::string, fs::path>& earlier_;
  Store& store_;
  std::mutex store_mu_;
};

// A stage of an earlier attempt can stand in for this one when every artifact is still there, unchanged.
bool artifacts_intact(const StageRecord& rec, spdlog::logger& log) {
  for (const auto& a : rec.artifacts) {
    try {
      if (checksum(a.name, a.path).sha256 != a.sha256) {
        log.info("stage '{}' ran before, but its artifact '{}' changed since; running it again", rec.name, a.name);
        return false;
      }
    } catch (const Error&) {
      log.info("stage '{}' ran before, but its artifact '{}' is gone ({}); running it again", rec.name, a.name, a.path);
      return false;
    }
  }
  return true;
}

StageRunner* as_stage_runner(PluginKind kind, Plugin* p) {
  // The kind was checked against the class at compile time by MMR_PLUGIN, so these downcasts are exact.
  switch (kind) {
    case PluginKind::Algorithm: return static_cast<Algorithm*>(p);
    case PluginKind::Benchmark: return static_cast<Benchmark*>(p);
    case PluginKind::Dataset: return static_cast<Dataset*>(p);
    default: throw InternalError("a stage must be run by an algorithm, benchmark or dataset plugin");
  }
}

std::string safe_dir_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out;
}

}  // namespace

std::atomic<bool>& stop_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
std::atomic<bool> g_watcher_quit{false};
std::thread g_watcher;
}  // namespace

SignalWatcher::SignalWatcher() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  g_watcher_quit = false;
  g_watcher = std::thread([set] {
    int count = 0;
    while (!g_watcher_quit.load()) {
      timespec timeout{0, 200 * 1000 * 1000};
      const int sig = sigtimedwait(&set, nullptr, &timeout);
      if (sig < 0) continue;
      ++count;
      if (count == 1) {
        stop_flag() = true;
        spdlog::warn("{} received: stopping after the current step; send it again to abort at once",
                     sig == SIGINT ? "SIGINT" : "SIGTERM");
        continue;
      }
      // Second signal: record the running trial as interrupted (own connection, own thread) and leave.
      std::lock_guard<std::mutex> lock(current().mu);
      if (current().trial_id > 0) {
        try {
          Store store(current().db);
          store.end_trial(current().trial_id, current().attempt, "interrupted", "aborted by a second signal");
        } catch (const std::exception& e) {
          std::fprintf(stderr, "could not record the interruption: %s\n", e.what());
        }
      }
      std::fprintf(stderr, "aborted\n");
      _exit(130);
    }
  });
}

SignalWatcher::~SignalWatcher() {
  g_watcher_quit = true;
  if (g_watcher.joinable()) g_watcher.join();
}

const char* git_commit_text();  // generated at build time (cmake/git_commit.cmake)
const char* build_git_commit() { return git_commit_text(); }

void validate_experiment(const Experiment& exp, const Registry& registry) {
  // Options are checked on the first trial's resolved stages; run-time references are opaque strings here.
  for (const auto& trial : exp.trials)
    for (const auto& stage : trial.stages) {
      const PluginInfo* info = registry.find_if(stage.kind, stage.plugin);
      if (!info) {
        try {
          registry.find(stage.kind, stage.plugin);
        } catch (const PluginError& e) {
          throw ConfigError(yaml_where(stage.where, exp.source.string()) + "stage '" + stage.name + "': " + e.what());
        }
      }
      check_options(info->options, stage.options, exp.source.string(),
                    fmt::format("stage '{}' ({} '{}')", stage.name, kind_name(stage.kind), stage.plugin));
    }
}

RunSummary run_experiment(const Experiment& exp, const Registry& registry, const RunOptions& opt) {
  auto log = spdlog::default_logger();
  RunSummary summary;
  summary.total = static_cast<int>(exp.trials.size());
  validate_experiment(exp, registry);

  Store store(opt.results_db);
  const std::string host = hostname();
  if (int n = store.recover_stale(host))
    log->warn("{} trial(s) were left 'running' by a process that is gone; marked interrupted", n);
  const int64_t exp_id = store.upsert_experiment(exp.name, fs::absolute(exp.source).string(), exp.text);
  std::vector<TrialRow> rows;
  for (const auto& t : exp.trials) rows.push_back(store.ensure_trial(exp_id, t));

  const fs::path root = opt.artifacts_root.empty() ? fs::absolute(opt.results_db).parent_path() : opt.artifacts_root;
  int todo = 0;
  for (const auto& r : rows) todo += (opt.force || r.status != "finished") ? 1 : 0;
  log->info("experiment '{}': {} trial(s), {} to run, {} already finished{}", exp.name, rows.size(), todo,
            static_cast<int>(rows.size()) - todo, opt.force ? " (--force: rerunning all)" : "");
  Progress overall(fmt::format("experiment {}", exp.name), todo, log);

  for (size_t i = 0; i < exp.trials.size(); ++i) {
    if (stop_flag()) break;
    const Trial& trial = exp.trials[i];
    const TrialRow& row = rows[i];
    if (row.status == "finished" && !opt.force) {
      ++summary.skipped;
      log->debug("trial {} [{}] finished before; skipped", trial.identity.substr(0, 12), trial.label);
      continue;
    }
    const fs::path trial_dir = root / safe_dir_name(exp.name) / trial.identity.substr(0, 12);
    fs::create_directories(trial_dir);
    const auto attempt_opt = store.begin_attempt(row.id, host, getpid(), build_git_commit(), trial_dir.string());
    if (!attempt_opt) {
      ++summary.busy;
      log->warn("trial {} [{}] is being run by another process (pid {} on {}); skipped", trial.identity.substr(0, 12),
                trial.label, row.pid, row.host);
      overall.advance();
      continue;
    }
    const int attempt = *attempt_opt;
    {
      std::lock_guard<std::mutex> lock(current().mu);
      current().db = fs::absolute(opt.results_db);
      current().trial_id = row.id;
      current().attempt = attempt;
    }
    ++summary.ran;
    auto tlog = make_logger("trial " + trial.identity.substr(0, 8), trial_dir / "trial.log");
    tlog->info("trial {}/{} [{}] attempt {}: {}", i + 1, exp.trials.size(), trial.label.empty() ? "-" : trial.label,
               attempt, trial_dir.string());

    std::map<std::string, fs::path> artifacts;
    std::string outcome = "finished", error;
    for (size_t s = 0; s < trial.stages.size(); ++s) {
      const StageSpec& stage = trial.stages[s];
      const bool last = s + 1 == trial.stages.size();
      StageRecord rec;
      rec.name = stage.name;
      rec.plugin = stage.plugin;
      rec.ordinal = static_cast<int>(s);

      if (!opt.force && attempt > 1) {
        if (auto prev = store.previous_stage(row.id, attempt, stage.name, stage.plugin);
            prev && artifacts_intact(*prev, *tlog)) {
          tlog->info("stage '{}': finished in an earlier attempt, artifacts intact; reused", stage.name);
          for (const auto& a : prev->artifacts) artifacts[stage.name + "/" + a.name] = a.path;
          prev->ordinal = rec.ordinal;
          store.commit_stage(row.id, attempt, *prev, last ? std::optional<std::string>("finished") : std::nullopt);
          ++summary.reused_stages;
          continue;
        }
      }

      const fs::path stage_dir = trial_dir / stage.name;
      fs::create_directories(stage_dir);
      rec.started_at = now_iso8601();
      tlog->info("stage '{}' ({} '{}') starts", stage.name, kind_name(stage.kind), stage.plugin);
      const auto t0 = std::chrono::steady_clock::now();
      std::unique_ptr<StageContextImpl> ctx;
      try {
        YAML::Node opts = resolve_runtime(stage.options, [&](const std::string& ns, const std::string& key) {
          if (ns == "trial") return key == "dir" ? trial_dir.string() : trial.identity;
          auto it = artifacts.find(key);
          if (it == artifacts.end())
            throw ConfigError(fmt::format("{}stage '{}': ${{artifact:{}}} was not produced by that stage",
                                          yaml_where(stage.where, exp.source.string()), stage.name, key));
          return it->second.string();
        });
        std::shared_ptr<Plugin> plugin = registry.create(stage.kind, stage.plugin, opts, exp.source.string());
        const PluginInfo& info = registry.find(stage.kind, stage.plugin);
        ctx = std::make_unique<StageContextImpl>(exp, trial, stage, Options(check_options(info.options, opts,
                                                     exp.source.string(), stage.name), exp.source.string()),
                                                 stage_dir, tlog, registry, artifacts, store);
        call_plugin(info, [&] {
          as_stage_runner(stage.kind, plugin.get())->run(*ctx);
          return 0;
        });
        if (stop_flag()) throw Interrupted();
        for (const auto& [name, path] : ctx->artifacts_) {
          rec.artifacts.push_back(checksum(name, path));
          artifacts[stage.name + "/" + name] = path;
        }
        rec.status = "finished";
      } catch (const Interrupted&) {
        rec.status = outcome = "interrupted";
        error = rec.error = "interrupted by signal";
      } catch (const std::exception& e) {
        rec.status = outcome = "failed";
        error = rec.error = e.what();
      }
      rec.ended_at = now_iso8601();
      if (ctx) rec.metrics = std::move(ctx->metrics_);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const bool ends_trial = last || rec.status != "finished";
      store.commit_stage(row.id, attempt, rec, ends_trial ? std::optional<std::string>(outcome) : std::nullopt, error);
      if (rec.status == "finished") {
        tlog->info("stage '{}' finished in {} ({} metric value(s), {} artifact(s))", stage.name,
                   Progress::format_duration(secs), rec.metrics.size(), rec.artifacts.size());
      } else {
        tlog->error("stage '{}' {}: {}", stage.name, rec.status, rec.error);
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(current().mu);
      current().trial_id = 0;
    }
    if (outcome == "finished") ++summary.finished;
    if (outcome == "failed") ++summary.failed;
    if (outcome == "interrupted") ++summary.interrupted;
    tlog->info("trial {} {}", trial.identity.substr(0, 12), outcome);
    overall.advance();
    if (outcome == "failed" && !opt.keep_going) break;
  }
  overall.finish();
  log->info("experiment '{}': {} ran ({} finished, {} failed, {} interrupted), {} skipped as finished, {} busy, {} "
            "stage(s) reused; results in {}", exp.name, summary.ran, summary.finished, summary.failed,
            summary.interrupted, summary.skipped, summary.busy, summary.reused_stages, opt.results_db.string());
  return summary;
}

}  // namespace mmr
