// runner: the command line of the experiment runner.
//
//   runner [global options] EXP.yaml [-o key=value]... [--force]    run an experiment (also: runner run EXP.yaml)
//   runner plan EXP.yaml [-o key=value]... [--verbose]              print the expanded trials, run nothing
//   runner results [--experiment NAME] [--format table|csv|json]    trials x final metrics
//   runner query "SQL" [--format table|csv|json]                    any SQL, database opened read-only
//   runner plugins [--kind KIND]                                    plugins, their options and load failures
//   runner score BENCHMARK key=value... [--format ...]              score existing answer/judgment files
//   runner report EXP [--out DIR]                                   report.html + report.md: tables, plots, files
//   runner status [EXP] [--format table|json]                       what a run is doing (from another terminal)
//   runner serve --model NAME [--model-opt k=v]... [--port N] ...   OpenAI-compatible server over a model plugin
//
// Global options: --results PATH (default results/results.db), --log-level LEVEL (default info),
// --plugin-path DIR (repeatable; also RUNNER_PLUGIN_PATH).
// Exit status: 0 success, 1 a trial failed, 2 bad usage or configuration, 130 interrupted.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

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

namespace fs = std::filesystem;
using namespace mmr;

namespace {

constexpr const char* kUsage = R"(usage: runner [global options] <command> [arguments]

commands:
  EXP.yaml | run EXP.yaml   run an experiment: expand the grid, run every trial's stages, record everything
      -o key=value          set a stage's option (-o train.lr=1e-4), a var (-o data=/x) or a path in the
                            file (-o defaults.train.lr=1e-4, -o grid.train.lr=[1e-4,5e-5])
      --force               rerun finished trials (default: skip them; failed/interrupted ones always rerun)
      --jobs N              run independent trials in N worker processes on one results database
      --devices 0,1,...     the GPUs the workers share out (each sees its share as CUDA_VISIBLE_DEVICES)
      --executor slurm      one Slurm job per trial (sbatch), results merged into the results database as jobs
                            end; waits for them unless --no-wait (a rerun then collects them)
      --partition P, --time T, --gpus-per-trial G, --sbatch ARG (repeatable), --poll SECONDS, --retries N
  plan EXP.yaml             print the expanded trials and check plugins and options; runs nothing
      -o key=value, --verbose (print each trial's resolved configuration)
  results                   one row per trial with its status and final metrics
      --experiment NAME     only this experiment (default: all)
      --format FMT          table (default), csv or json
  query "SQL"               run SQL against the results database, opened read-only
      --format FMT          table (default), csv or json
  plugins                   every plugin with its version and options (type, default, help), and load failures
      --kind KIND           only model, algorithm, dataset, benchmark or judge plugins
  score BENCHMARK key=value...   score existing answer or judgment files with a benchmark's official rules
  report EXP                an experiment (name or .yaml file) as report.html and report.md: tables of final
                            metrics (mean ± std over seeds), the plots of its report: section, training curves
                            (drawn by gnuplot), each trial's log and artifacts
      --out DIR             where to write (default results/<experiment>/report/ beside the database)
  status [EXP]              per experiment: trials by status, each running trial's stage, step/total and ETA,
                            the experiment's ETA; reads the database while a run writes it
      --format FMT          table (default) or json
  serve --model NAME ...    OpenAI-compatible chat-completions server over a model plugin (runner serve --help)

global options:
  --results PATH            results database (default results/results.db; artifacts go beside it)
  --log-level LEVEL         trace, debug, info (default), warn, error, off
  --plugin-path DIR         also load plugins from DIR (repeatable; before RUNNER_PLUGIN_PATH and the build's own)
  -h, --help                this text
  --version                 version, build id and git commit
)";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::vector<std::string> overrides;
  std::vector<fs::path> plugin_paths;
  fs::path results = "results/results.db";
  std::string log_level = "info";
  std::string format = "table";
  std::string experiment;
  std::string kind;
  fs::path out;
  bool force = false;
  bool verbose = false;
  int jobs = 1;
  std::string devices;
  std::string force_since;  // a worker of --jobs: the parent's start (RunOptions::force_since)
  bool worker = false;      // a worker of --jobs: the parent writes the report
  std::string executor = "local";
  slurm::SlurmOptions slurm;
  fs::path slurm_job;       // inside a Slurm job: its folder (slurm.h)
};

class UsageError : public Error {
 public:
  using Error::Error;
};

int parse_jobs(const std::string& text) {
  try {
    size_t used = 0;
    const int n = std::stoi(text, &used);
    if (used == text.size() && n >= 1 && n <= 256) return n;
  } catch (const std::exception&) {
  }
  throw UsageError(fmt::format("--jobs '{}': expected a number of worker processes from 1 to 256", text));
}

int parse_count(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const int n = std::stoi(text, &used);
    if (used == text.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  throw UsageError(fmt::format("{} '{}': expected a whole number >= 0", flag, text));
}

// Reads the global or command option at argv[i] into `a`, moving `i` past its value; false when argv[i] is none.
bool parse_option(int argc, char** argv, int& i, Args& a) {
  const std::string arg = argv[i];
  auto value = [&](const std::string& name) -> std::string {
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) return arg.substr(eq + 1);
    if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", name));
    return argv[++i];
  };
  auto is = [&](const char* name) { return arg == name || arg.rfind(std::string(name) + "=", 0) == 0; };
  if (is("--results")) a.results = value("--results");
  else if (is("--log-level")) a.log_level = value("--log-level");
  else if (is("--plugin-path")) a.plugin_paths.emplace_back(value("--plugin-path"));
  else if (arg == "-o" || is("--override")) a.overrides.push_back(value("-o"));
  else if (arg.rfind("-o", 0) == 0 && arg.size() > 2 && arg[2] != '-') a.overrides.push_back(arg.substr(2));
  else if (is("--format")) a.format = value("--format");
  else if (is("--experiment")) a.experiment = value("--experiment");
  else if (is("--kind")) a.kind = value("--kind");
  else if (is("--out")) a.out = value("--out");
  else if (arg == "--force") a.force = true;
  else if (is("--jobs")) a.jobs = parse_jobs(value("--jobs"));
  else if (is("--devices")) a.devices = value("--devices");
  else if (is("--force-since")) a.force_since = value("--force-since");
  else if (arg == "--worker") a.worker = true;
  else if (is("--executor")) a.executor = value("--executor");
  else if (is("--partition")) a.slurm.partition = value("--partition");
  else if (is("--time")) a.slurm.time = value("--time");
  else if (is("--gpus-per-trial")) a.slurm.gpus_per_trial = parse_count("--gpus-per-trial", value("--gpus-per-trial"));
  else if (is("--sbatch")) a.slurm.sbatch_args.push_back(value("--sbatch"));
  else if (is("--poll")) a.slurm.poll_s = parse_count("--poll", value("--poll"));
  else if (is("--retries")) a.slurm.retries = parse_count("--retries", value("--retries"));
  else if (arg == "--no-wait") a.slurm.wait = false;
  else if (is("--slurm-job")) a.slurm_job = value("--slurm-job");
  else if (arg == "--verbose" || arg == "-v") a.verbose = true;
  else return false;
  return true;
}

// The command and its arguments from the words that are not options: a command name, or an experiment file.
void set_command(const std::vector<std::string>& words, Args& a) {
  if (words.empty()) throw UsageError("no command given");
  static const std::set<std::string> commands = {"run",   "plan",  "results", "query", "plugins",
                                                 "score", "serve", "report",  "status"};
  const std::string& first = words[0];
  if (commands.count(first)) {
    a.command = first;
    a.positional.assign(words.begin() + 1, words.end());
  } else if (first.size() > 5 &&
             (first.substr(first.size() - 5) == ".yaml" || first.substr(first.size() - 4) == ".yml")) {
    a.command = "run";
    a.positional = words;
  } else {
    throw UsageError(fmt::format("unknown command '{}' (expected an experiment .yaml file or one of: {})", first,
                                 fmt::join(commands, ", ")));
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help" || arg == "--version") {
      a.command = arg == "--version" ? "version" : "help";
      return a;
    }
    if (parse_option(argc, argv, i, a)) continue;
    if (arg == "_stage-rank" && words.empty()) {  // a rank of a data-parallel stage, started by the runner
      a.command = arg;
      a.positional.assign(argv + i + 1, argv + argc);
      return a;
    }
    if (arg == "serve" && words.empty()) {
      // Everything after `serve` is the server's own (app/serve.h).
      a.command = "serve";
      a.positional.assign(argv + i + 1, argv + argc);
      return a;
    }
    if (arg.size() > 1 && arg[0] == '-') throw UsageError(fmt::format("unknown option '{}'", arg));
    words.push_back(arg);
  }
  set_command(words, a);
  return a;
}

PluginKind parse_kind(const std::string& s) {
  for (auto k : {PluginKind::Model, PluginKind::Algorithm, PluginKind::Dataset, PluginKind::Benchmark,
                 PluginKind::Judge})
    if (s == kind_name(k)) return k;
  throw UsageError(fmt::format("--kind '{}': expected model, algorithm, dataset, benchmark or judge", s));
}

std::string one_positional(const Args& a, const char* what) {
  if (a.positional.size() != 1)
    throw UsageError(fmt::format("'{}' takes exactly one {} (got {})", a.command, what, a.positional.size()));
  return a.positional[0];
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
  validate_experiment(exp, registry);  // once here, not N times in the workers
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
  validate_experiment(exp, registry);  // before anything is submitted
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
  const fs::path file = one_positional(a, "experiment file");
  Experiment exp = load_experiment(file, a.overrides);
  Registry registry;
  load_plugins(registry, a);
  if (!a.slurm_job.empty()) return cmd_run_slurm_job(a, std::move(exp), registry);
  if (a.executor == "slurm") return cmd_run_slurm(a, file, exp, registry);
  if (a.executor != "local") throw UsageError(fmt::format("--executor '{}': expected local or slurm", a.executor));
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

int cmd_plan(const Args& a) {
  const fs::path file = one_positional(a, "experiment file");
  Experiment exp = load_experiment(file, a.overrides);
  Registry registry;
  load_plugins(registry, a);
  validate_experiment(exp, registry);
  const std::map<std::string, std::string> status = recorded_statuses(a.results, exp.name);
  std::cout << fmt::format("experiment '{}' ({}): {} trial(s)", exp.name, file.string(), exp.trials.size());
  if (exp.duplicates_dropped) std::cout << fmt::format(", {} duplicate point(s) dropped", exp.duplicates_dropped);
  std::cout << "\n";
  std::vector<std::string> stages;
  if (!exp.trials.empty())
    for (const auto& s : exp.trials[0].stages) stages.push_back(fmt::format("{} ({} {})", s.name, kind_name(s.kind), s.plugin));
  std::cout << "stages: " << fmt::format("{}", fmt::join(stages, " -> ")) << "\n\n";
  int finished = 0;
  print_result(std::cout, plan_table(exp, status, finished), parse_format(a.format));
  std::cout << fmt::format("\n{} to run, {} finished (skipped unless --force); results: {}\n",
                           exp.trials.size() - finished, finished, a.results.string());
  if (a.verbose)
    for (const auto& t : exp.trials) std::cout << "\n" << t.identity << "  " << t.resolved_json << "\n";
  return 0;
}

// Throws UsageError listing the experiments there are when `name` is not one of them.
void require_experiment(const Store& store, const std::string& name, const fs::path& results) {
  if (store.has_experiment(name)) return;
  const std::vector<std::string> have = store.experiment_names();
  throw UsageError(fmt::format("no experiment '{}' in {}; experiments: {}", name, results.string(),
                               have.empty() ? "(none)" : fmt::format("{}", fmt::join(have, ", "))));
}

// One row per trial (experiment, ordinal, identity, label, status, attempt), then one column per final metric
// ("stage/name", in stage and name order); a trial without that metric gets NULL.
QueryResult results_table(const std::vector<TrialSummary>& trials, const std::vector<FinalMetric>& metrics) {
  std::vector<std::string> metric_names;
  std::map<std::pair<int64_t, std::string>, QueryCell> values;
  for (const FinalMetric& m : metrics) {
    const std::string column = m.stage + "/" + m.name;
    if (std::find(metric_names.begin(), metric_names.end(), column) == metric_names.end())
      metric_names.push_back(column);
    values[{m.trial_id, column}] = m.value;
  }
  QueryResult out;
  out.columns = {"experiment", "#", "trial", "label", "status", "attempt"};
  for (const auto& m : metric_names) out.columns.push_back(m);
  for (const TrialSummary& t : trials) {
    std::vector<QueryCell> row = {{QueryCell::Text, t.experiment},
                                  {QueryCell::Integer, std::to_string(t.ordinal)},
                                  {QueryCell::Text, t.identity.substr(0, 12)},
                                  {QueryCell::Text, t.label.empty() ? "-" : t.label},
                                  {QueryCell::Text, t.status},
                                  {QueryCell::Integer, std::to_string(t.attempt)}};
    for (const auto& m : metric_names) {
      auto it = values.find({t.id, m});
      row.push_back(it == values.end() ? QueryCell{} : it->second);
    }
    out.rows.push_back(std::move(row));
  }
  return out;
}

int cmd_results(const Args& a) {
  if (!a.positional.empty()) throw UsageError("'results' takes no positional arguments (use --experiment NAME)");
  Store store(a.results, Store::Mode::ReadOnly);
  std::optional<std::string> experiment;
  if (!a.experiment.empty()) {
    require_experiment(store, a.experiment, a.results);
    experiment = a.experiment;
  }
  print_result(std::cout, results_table(store.trials(experiment), store.final_metrics(experiment)),
               parse_format(a.format));
  return 0;
}

int cmd_query(const Args& a) {
  const std::string sql = one_positional(a, "SQL string");
  Store store(a.results, Store::Mode::ReadOnly);
  print_result(std::cout, store.query(sql), parse_format(a.format));
  return 0;
}

int cmd_plugins(const Args& a) {
  Registry registry;
  registry.scan_default(a.plugin_paths);
  std::vector<const PluginInfo*> list = a.kind.empty() ? registry.list() : registry.list(parse_kind(a.kind));
  if (list.empty()) std::cout << "no plugins loaded\n";
  for (const PluginInfo* p : list) {
    std::cout << fmt::format("{} {} {}  ({})\n", kind_name(p->kind), p->name, p->version, p->path.string());
    if (!p->summary.empty()) std::cout << "  " << p->summary << "\n";
    for (const auto& o : p->options)
      std::cout << fmt::format("    {:<22} {:<7} {:<14} {}\n", o.name, o.type,
                               o.required ? "(required)" : (o.default_yaml.empty() ? "-" : o.default_yaml), o.help);
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

int cmd_score(const Args& a) {
  if (a.positional.empty()) throw UsageError("'score' needs a benchmark name, then key=value arguments");
  Registry registry;
  load_plugins(registry, a);
  const std::string name = a.positional[0];
  YAML::Node args(YAML::NodeType::Map);
  for (size_t i = 1; i < a.positional.size(); ++i) {
    const std::string& kv = a.positional[i];
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw UsageError(fmt::format("score: '{}': expected key=value", kv));
    args[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  auto plugin = registry.create(PluginKind::Benchmark, name, YAML::Node(), "command line");
  const PluginInfo& info = registry.find(PluginKind::Benchmark, name);
  const MetricList metrics = call_plugin(info, [&] {
    return static_cast<Benchmark*>(plugin.get())->score(Options(args, "runner score " + name));
  });
  QueryResult out;
  out.columns = {"metric", "value"};
  for (const auto& m : metrics) out.rows.push_back({{QueryCell::Text, m.name}, {QueryCell::Real, fmt::format("{}", m.value)}});
  print_result(std::cout, out, parse_format(a.format));
  return 0;
}

int cmd_report(const Args& a) {
  const fs::path folder = write_report({a.results, one_positional(a, "experiment (a name or an experiment file)"), a.out});
  std::cout << (folder / "report.html").string() << "\n" << (folder / "report.md").string() << "\n";
  return 0;
}

int cmd_status(const Args& a) {
  if (a.positional.size() > 1)
    throw UsageError(fmt::format("'status' takes at most one experiment (got {})", a.positional.size()));
  print_status({a.results, a.positional.empty() ? "" : a.positional[0], parse_format(a.format)}, std::cout);
  return 0;
}

int cmd_serve(const Args& a) {
  for (const auto& arg : a.positional)
    if (arg == "-h" || arg == "--help") return std::cout << serve::kServeUsage, 0;
  const serve::ServeOptions options = serve::parse_serve_args(a.positional);
  Registry registry;
  load_plugins(registry, a);
  return serve::run_server(options, registry);
}

int run_command(const Args& args) {
  if (args.command == "help") return std::cout << kUsage, 0;
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
  if (args.command == "_stage-rank") return stage_rank_main(one_positional(args, "rank request file"));
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
  try {
    args = parse_args(argc, argv);
    setup_logging(args.log_level);
  } catch (const Error& e) {
    std::cerr << "runner: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
  try {
    return run_command(args);
  } catch (const UsageError& e) {
    std::cerr << "runner: " << e.what() << "\n(runner --help for usage)\n";
    return 2;
  } catch (const ConfigError& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return 2;
  } catch (const PluginError& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "runner: " << e.what() << "\n";
    return 1;
  }
}
