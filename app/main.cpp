// runner: the command line of the experiment runner (app/command_line.h parses it; `runner --help` and
// `runner COMMAND --help` list everything).
//
//   runner [global options] EXP.yaml [-o key=value]... [--force]    run an experiment (also: runner run EXP.yaml)
//   runner plan EXP.yaml [-o key=value]... [--verbose] [--format table|csv|json]
//   runner results [--experiment NAME] [--where KEY=VALUE]... [--stage NAME] [--columns GLOBS] [--format ...]
//   runner query "SQL" [--format table|csv|json]                    any SQL, database opened read-only
//   runner plugins [--kind KIND]                                    plugins, their options and load failures
//   runner score BENCHMARK key=value... [--format ...]              score existing answer/judgment files
//   runner report EXP [--out DIR]                                   report.html + report.md: tables, plots, files
//   runner status [EXP] [--format table|json]                       what a run is doing (from another terminal)
//   runner serve --model NAME [--model-opt k=v]... [--port N] ...   OpenAI-compatible server over a model plugin
//
// Exit status: 0 success, 1 a trial failed, 2 bad usage or configuration, 130 interrupted.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "app/command_line.h"
#include "app/format.h"
#include "app/jobs.h"
#include "app/slurm.h"
#include "app/report.h"
#include "app/serve.h"
#include "app/status.h"
#include "core/log.h"
#include "core/ranks.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/spec.h"
#include "core/store.h"
#include "core/lib/util/json_safe.h"

namespace fs = std::filesystem;
using namespace mmr;

namespace {

class UsageError : public Error {
 public:
  using Error::Error;
};

PluginKind parse_kind(const std::string& s) {
  for (auto k : {PluginKind::Model, PluginKind::Algorithm, PluginKind::Dataset, PluginKind::Benchmark,
                 PluginKind::Judge})
    if (s == kind_name(k)) return k;
  throw UsageError(fmt::format("--kind '{}': expected model, algorithm, dataset, benchmark or judge", s));
}

void load_plugins(Registry& registry, const Args& a) {
  registry.scan_default(a.plugin_paths);
  for (const auto& f : registry.failures())
    if (f.reason.rfind("shadowed", 0) != 0 && f.path != Registry::builtin_dir())
      spdlog::warn("plugin library {} not loaded: {}", f.path.string(), f.reason);
}

// A run of an experiment that declares a `report:` section ends by writing its report; a report that cannot be
// written is a warning, not a failed run (`runner report` writes it again).
void write_declared_report(const Experiment& exp, const fs::path& results) {
  try {
    if (!YAML::Load(exp.text)["report"]) return;
    const fs::path dir = write_report({results, exp.name, {}});
    spdlog::info("report: {}", (dir / "report.html").string());
  } catch (const std::exception& e) {
    spdlog::warn("the report was not written: {}", e.what());
  }
}

// The arguments of a --jobs worker: this run's, less --jobs/--devices, with the parent's start for --force.
std::vector<std::string> worker_args(const Args& a, const fs::path& file) {
  std::vector<std::string> w = {"--results", a.results.string(), "--log-level", a.log_level};
  for (const auto& p : a.plugin_paths) w.insert(w.end(), {"--plugin-path", p.string()});
  w.insert(w.end(), {"run", file.string()});
  for (const auto& o : a.overrides) w.insert(w.end(), {"-o", o});
  if (a.force) w.insert(w.end(), {"--force", "--force-since=" + now_iso8601()});
  w.push_back("--worker");
  return w;
}

int cmd_run_jobs(const Args& a, const fs::path& file, const Experiment& exp, const Registry& registry) {
  {
    const ExitOnFirstSignal nothing_started;
    validate_experiment(exp, registry);  // once here, not N times in the workers
  }
  jobs::JobsOptions o;
  o.jobs = a.jobs;
  try {
    if (!a.devices.empty()) o.devices = jobs::parse_devices(a.devices);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  o.worker_args = worker_args(a, file);
  spdlog::info("experiment '{}': {} trial(s) in {} worker processes", exp.name, exp.trials.size(), a.jobs);
  const int status = jobs::run_workers(o);
  if (status != 130) write_declared_report(exp, a.results);
  return status;
}

// The command line of a Slurm job running the trial whose folder is `dir`: this run's, with absolute paths.
std::vector<std::string> slurm_job_args(const Args& a, const fs::path& file, const fs::path& dir) {
  std::vector<std::string> w = {fs::read_symlink("/proc/self/exe").string(), "--results",
                                fs::absolute(a.results).string(), "--log-level", a.log_level};
  for (const auto& p : a.plugin_paths) w.insert(w.end(), {"--plugin-path", fs::absolute(p).string()});
  w.insert(w.end(), {"run", fs::absolute(file).string()});
  for (const auto& o : a.overrides) w.insert(w.end(), {"-o", o});
  w.insert(w.end(), {"--slurm-job", dir.string()});
  return w;
}

int cmd_run_slurm(const Args& a, const fs::path& file, const Experiment& exp, const Registry& registry) {
  if (a.force) throw UsageError("--force is not supported with --executor slurm yet");
  if (a.jobs > 1 || !a.devices.empty()) throw UsageError("--jobs/--devices are for the local executor");
  {
    const ExitOnFirstSignal nothing_started;
    validate_experiment(exp, registry);  // before anything is submitted
  }
  const int status = slurm::run_on_slurm(exp, a.results, a.slurm,
                                         [&](const fs::path& dir) { return slurm_job_args(a, file, dir); });
  if (status != 130 && a.slurm.wait) write_declared_report(exp, a.results);
  return status;
}

// Inside a Slurm job: the one trial of the job folder, into the job's own store; artifacts where a local run
// puts them (beside the results database, which the job never opens).
int cmd_run_slurm_job(const Args& a, Experiment exp, const Registry& registry) {
  const slurm::JobPlan plan = slurm::prepare_job(a.slurm_job);
  exp.trials.erase(std::remove_if(exp.trials.begin(), exp.trials.end(),
                                  [&](const Trial& t) { return t.identity != plan.identity; }),
                   exp.trials.end());
  if (exp.trials.empty())
    throw ConfigError(fmt::format("--slurm-job {}: the experiment has no trial {} (was the file changed since the "
                                  "job was submitted?)", a.slurm_job.string(), plan.identity.substr(0, 12)));
  RunOptions opt;
  opt.results_db = plan.store;
  opt.artifacts_root = fs::absolute(a.results).parent_path();
  opt.plugin_paths = a.plugin_paths;
  const RunSummary s = run_experiment(exp, registry, opt);
  slurm::publish_job(plan);
  if (s.interrupted > 0 || stop_flag()) return 130;
  return s.failed > 0 ? 1 : 0;
}

int cmd_run(const Args& a) {
  const fs::path& file = a.file;
  std::optional<ExitOnFirstSignal> nothing_started(std::in_place);
  Experiment exp = load_experiment(file, a.overrides);
  Registry registry;
  load_plugins(registry, a);
  nothing_started.reset();  // run_experiment, --jobs and Slurm stop their work as work
  if (!a.slurm_job.empty()) return cmd_run_slurm_job(a, std::move(exp), registry);
  if (a.executor == "slurm") return cmd_run_slurm(a, file, exp, registry);
  if (a.jobs > 1) return cmd_run_jobs(a, file, exp, registry);
  if (!a.devices.empty()) throw UsageError("--devices shares GPUs among --jobs workers; give --jobs N too");
  RunOptions opt;
  opt.results_db = a.results;
  opt.force = a.force;
  opt.force_since = a.force_since;
  opt.plugin_paths = a.plugin_paths;
  opt.take_over_busy = a.worker;
  const RunSummary s = run_experiment(exp, registry, opt);
  if (s.interrupted > 0 || stop_flag()) return 130;
  if (!a.worker) write_declared_report(exp, a.results);
  return s.failed > 0 ? 1 : 0;
}

// identity -> status of the experiment's trials already in the results database (none when it has no file yet).
std::map<std::string, std::string> recorded_statuses(const fs::path& results, const std::string& experiment) {
  std::map<std::string, std::string> status;
  if (!fs::exists(results)) return status;
  Store store(results, Store::Mode::ReadOnly);
  for (const TrialSummary& t : store.trials(experiment)) status[t.identity] = t.status;
  return status;
}

// One row per trial: its ordinal, identity, recorded status ("new" when there is none), seed and label.
QueryResult plan_table(const Experiment& exp, const std::map<std::string, std::string>& status, int& finished) {
  QueryResult table;
  table.columns = {"#", "trial", "status", "seed", "label"};
  for (const auto& t : exp.trials) {
    auto it = status.find(t.identity);
    const std::string st = it == status.end() ? "new" : it->second;
    finished += st == "finished";
    table.rows.push_back({{QueryCell::Integer, std::to_string(t.ordinal)},
                          {QueryCell::Text, t.identity.substr(0, 12)},
                          {QueryCell::Text, st},
                          {QueryCell::Integer, std::to_string(t.seed)},
                          {QueryCell::Text, t.label.empty() ? "-" : t.label}});
  }
  return table;
}

// The stages the trials have, each once, in first-seen order (a `when:` stage is in some trials only).
std::vector<const StageSpec*> distinct_stages(const Experiment& exp) {
  std::vector<const StageSpec*> out;
  for (const auto& t : exp.trials)
    for (const auto& s : t.stages)
      if (std::none_of(out.begin(), out.end(),
                       [&](const StageSpec* o) { return o->name == s.name && o->plugin == s.plugin; }))
        out.push_back(&s);
  return out;
}

// `plan --format json`: one object, the experiment, its stages and the trials (with --verbose, each trial's
// identity and resolved configuration).
void print_plan_json(const Experiment& exp, const fs::path& file, const QueryResult& table, int finished,
                     const Args& a) {
  nlohmann::json stages = nlohmann::json::array();
  for (const StageSpec* s : distinct_stages(exp))
    stages.push_back({{"name", s->name}, {"kind", kind_name(s->kind)}, {"plugin", s->plugin}});
  std::ostringstream rows;
  print_result(rows, table, Format::Json);
  nlohmann::json trials = nlohmann::json::parse(rows.str());
  for (size_t i = 0; i < exp.trials.size(); ++i) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& s : exp.trials[i].stages) names.push_back(s.name);
    trials[i]["stages"] = names;
    if (!a.verbose) continue;
    trials[i]["identity"] = exp.trials[i].identity;
    trials[i]["config"] = nlohmann::json::parse(exp.trials[i].resolved_json);
  }
  const nlohmann::json doc = {{"experiment", exp.name}, {"file", file.string()},
                              {"duplicates_dropped", exp.duplicates_dropped}, {"stages", stages},
                              {"trials", trials}, {"to_run", static_cast<int64_t>(exp.trials.size()) - finished},
                              {"finished", finished}, {"results", a.results.string()}};
  std::cout << dump_text(doc, 2) << "\n";
}

void print_plan_table(const Experiment& exp, const fs::path& file, const QueryResult& table, int finished,
                      const Args& a) {
  std::cout << fmt::format("experiment '{}' ({}): {} trial(s)", exp.name, file.string(), exp.trials.size());
  if (exp.duplicates_dropped) std::cout << fmt::format(", {} duplicate point(s) dropped", exp.duplicates_dropped);
  std::cout << "\n";
  std::vector<std::string> stages;
  if (!exp.trials.empty())
    for (const auto& s : exp.trials[0].stages) stages.push_back(fmt::format("{} ({} {})", s.name, kind_name(s.kind), s.plugin));
  std::cout << "stages: " << fmt::format("{}", fmt::join(stages, " -> ")) << "\n\n";
  print_result(std::cout, table, Format::Table);
  std::cout << fmt::format("\n{} to run, {} finished (skipped unless --force); results: {}\n",
                           exp.trials.size() - finished, finished, a.results.string());
  if (a.verbose)
    for (const auto& t : exp.trials) std::cout << "\n" << t.identity << "  " << t.resolved_json << "\n";
}

int cmd_plan(const Args& a) {
  const ExitOnFirstSignal nothing_to_stop;  // plan records nothing: Ctrl-C ends it at once
  Experiment exp = load_experiment(a.file, a.overrides);
  Registry registry;
  load_plugins(registry, a);
  validate_experiment(exp, registry);
  const std::map<std::string, std::string> status = recorded_statuses(a.results, exp.name);
  int finished = 0;
  QueryResult table = plan_table(exp, status, finished);
  const Format format = parse_format(a.format);
  if (format == Format::Json) {
    print_plan_json(exp, a.file, table, finished, a);
  } else if (format == Format::Csv) {
    if (a.verbose) {  // the resolved configuration as one more column
      table.columns.push_back("config");
      for (size_t i = 0; i < exp.trials.size(); ++i)
        table.rows[i].push_back({QueryCell::Text, exp.trials[i].resolved_json});
    }
    print_result(std::cout, table, Format::Csv);
  } else {
    print_plan_table(exp, a.file, table, finished, a);
  }
  return 0;
}

// Throws UsageError listing the experiments there are when `name` is not one of them.
void require_experiment(const Store& store, const std::string& name, const fs::path& results) {
  if (store.has_experiment(name)) return;
  const std::vector<std::string> have = store.experiment_names();
  throw UsageError(fmt::format("no experiment '{}' in {}; experiments: {}", name, results.string(),
                               have.empty() ? "(none)" : fmt::format("{}", fmt::join(have, ", "))));
}

int cmd_results(const Args& a) {
  Store store(a.results, Store::Mode::ReadOnly);
  if (a.selection.experiment) require_experiment(store, *a.selection.experiment, a.results);
  const QueryResult table = results_table(store, a.selection);
  const Format format = parse_format(a.format);
  if (format == Format::Table) {
    print_table_within(std::cout, table, output_width(), results_key_columns());
  } else {
    print_result(std::cout, table, format);
  }
  return 0;
}

int cmd_query(const Args& a) {
  Store store(a.results, Store::Mode::ReadOnly);
  print_result(std::cout, store.query(a.sql), parse_format(a.format));
  return 0;
}

// A plugin's options, one line each: name, type, default (or "(required)"), help.
void print_options(std::ostream& out, const PluginInfo& p) {
  for (const auto& o : p.options)
    out << fmt::format("    {:<22} {:<7} {:<14} {}\n", o.name, o.type,
                       o.required ? "(required)" : (o.default_yaml.empty() ? "-" : o.default_yaml), o.help);
}

int cmd_plugins(const Args& a) {
  Registry registry;
  registry.scan_default(a.plugin_paths);
  std::vector<const PluginInfo*> list = a.kind.empty() ? registry.list() : registry.list(parse_kind(a.kind));
  if (list.empty()) std::cout << "no plugins loaded\n";
  for (const PluginInfo* p : list) {
    std::cout << fmt::format("{} {} {}  ({})\n", kind_name(p->kind), p->name, p->version, p->path.string());
    if (!p->summary.empty()) std::cout << "  " << p->summary << "\n";
    print_options(std::cout, *p);
  }
  bool header = false;
  for (const auto& f : registry.failures()) {
    if (f.path == Registry::builtin_dir() && f.reason.find("does not exist") != std::string::npos) continue;
    if (!header) std::cout << "\nnot loaded:\n";
    header = true;
    std::cout << fmt::format("  {}: {}\n", f.path.string(), f.reason);
  }
  return 0;
}

// `runner score BENCHMARK --help`. The plugin interface has no list of the keys scoring reads (Benchmark::score
// takes the benchmark's own options), so this lists the benchmark's options and says so.
int cmd_score_help(const Args& a) {
  Registry registry;
  load_plugins(registry, a);
  const PluginInfo& info = registry.find(PluginKind::Benchmark, a.benchmark);
  std::cout << fmt::format("usage: runner score {} KEY=VALUE... [--format table|csv|json]\n\n", info.name);
  std::cout << fmt::format("benchmark {} {}: {}\n\n", info.name, info.version, info.summary);
  std::cout << "Score keys: the plugin does not declare which of its options scoring reads; each KEY=VALUE is one of "
               "its options\n(name, type, default, help), and the plugin names the ones it is missing:\n";
  print_options(std::cout, info);
  return 0;
}

int cmd_score(const Args& a) {
  if (a.score_help) return cmd_score_help(a);
  Registry registry;
  load_plugins(registry, a);
  YAML::Node args(YAML::NodeType::Map);
  for (const std::string& kv : a.score_args) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError(fmt::format("score: '{}': expected key=value", kv));
    args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto plugin = registry.create(PluginKind::Benchmark, a.benchmark, YAML::Node(), "command line");
  const PluginInfo& info = registry.find(PluginKind::Benchmark, a.benchmark);
  const MetricList metrics = call_plugin(info, [&] {
    return static_cast<Benchmark*>(plugin.get())->score(Options(args, "runner score " + a.benchmark));
  });
  QueryResult out;
  out.columns = {"metric", "value"};
  for (const auto& m : metrics) out.rows.push_back({{QueryCell::Text, m.name}, {QueryCell::Real, fmt::format("{}", m.value)}});
  print_result(std::cout, out, parse_format(a.format));
  return 0;
}

int cmd_report(const Args& a) {
  const fs::path folder = write_report({a.results, a.experiment, a.out});
  std::cout << (folder / "report.html").string() << "\n" << (folder / "report.md").string() << "\n";
  return 0;
}

int cmd_status(const Args& a) {
  print_status({a.results, a.experiment, parse_format(a.format)}, std::cout);
  return 0;
}

int cmd_serve(const Args& a) {
  serve::ServeOptions options = a.serve;
  serve::finish_serve_options(options, a.serve_config);
  Registry registry;
  load_plugins(registry, a);
  return serve::run_server(options, registry);
}

int run_command(const Args& args) {
  if (args.command == "version") {
    std::cout << fmt::format("runner {} (plugin ABI {}, build {}, commit {})\n", MMR_VERSION, kPluginAbiVersion,
                             kBuildId, build_git_commit());
    return 0;
  }
  if (args.command == "run") return cmd_run(args);
  if (args.command == "plan") return cmd_plan(args);
  if (args.command == "results") return cmd_results(args);
  if (args.command == "query") return cmd_query(args);
  if (args.command == "plugins") return cmd_plugins(args);
  if (args.command == "score") return cmd_score(args);
  if (args.command == "serve") return cmd_serve(args);
  if (args.command == "report") return cmd_report(args);
  if (args.command == "status") return cmd_status(args);
  if (args.command == "_stage-rank") return stage_rank_main(args.file);
  return 2;
}

}  // namespace

// glibc serves every allocation above 128 KiB with its own mmap and gives it back with munmap on free, and trims
// the heap top eagerly. A LibTorch training step allocates and frees thousands of such activation tensors, so
// each one costs fresh zeroed pages from the kernel: on the 2-core machine the tiny model's training stage spent
// 20 s in the kernel against 13 s in user code (`time runner ...`, sys > user). Serving blocks up to 1 GiB from
// the heap and not trimming it (both are needed: attention scores alone pass 32 MiB) cut that stage from 26 s to
// 9 s. The cost: memory freed below the peak stays with the process, which is reused by the next step anyway.
void keep_freed_memory_in_the_heap() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

int main(int argc, char** argv) {
  keep_freed_memory_in_the_heap();
  SignalWatcher signals;  // first: every thread started later inherits the blocked signals
  Args args;
  if (const std::optional<int> done = parse_command_line(argc, argv, args)) return *done;
  try {
    setup_logging(args.log_level);
    return run_command(args);
  } catch (const UsageError& e) {
    std::cerr << "runner: " << redact_secrets(e.what()) << "\n(runner --help for usage)\n";
    return 2;
  } catch (const ConfigError& e) {
    std::cerr << "runner: " << redact_secrets(e.what()) << "\n";
    return 2;
  } catch (const PluginError& e) {
    std::cerr << "runner: " << redact_secrets(e.what()) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "runner: " << redact_secrets(e.what()) << "\n";
    return 1;
  }
}
