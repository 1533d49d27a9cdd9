// The runner's command line on CLI11. See command_line.h.
#include "app/command_line.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <iostream>

#include "core/api/error.h"

namespace mmr {
namespace {

constexpr const char* kDescription =
    "runner: runs multimodal preference-alignment experiments (YAML grids of plugin stages) and records every "
    "result in SQLite.";
constexpr const char* kFooter =
    "`runner EXP.yaml ...` is short for `runner run EXP.yaml ...`. Global options go before or after the command.\n"
    "runner COMMAND --help lists a command's own options.\n"
    "Exit status: 0 success, 1 a trial failed, 2 bad usage or configuration, 130 interrupted.\n";
// What every command's help ends with (a command's own footer goes before it).
constexpr const char* kCommandFooter =
    "Global options, before or after the command: --results PATH, --log-level LEVEL, --plugin-path DIR "
    "(runner --help).\n";

// An option given any number of times, one value each: the word after it is never taken as a second value
// (`-o a=1 EXP.yaml`).
CLI::Option* repeatable(CLI::Option* o) {
  return o->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)->allow_extra_args(false);
}

// A whole number from `min` to `max`, named with `what` when it is not one.
int whole_number(const std::string& flag, const std::string& text, int min, int max, const std::string& what) {
  try {
    size_t used = 0;
    const int n = std::stoi(text, &used);
    if (used == text.size() && n >= min && n <= max) return n;
  } catch (const std::exception&) {
  }
  throw ConfigError(fmt::format("{} '{}': expected {}", flag, text, what));
}

template <typename T>
CLI::Option* count_option(CLI::App& cmd, const std::string& flag, T& target, const std::string& help) {
  return cmd.add_option_function<std::string>(
      flag,
      [&target, flag](const std::string& v) { target = whole_number(flag, v, 0, INT32_MAX, "a whole number >= 0"); },
      help)->type_name("N");
}

// "a, b or c"
std::string alternatives(const std::vector<std::string>& choices) {
  if (choices.size() < 2) return fmt::format("{}", fmt::join(choices, ""));
  return fmt::format("{} or {}", fmt::join(choices.begin(), choices.end() - 1, ", "), choices.back());
}

// An option whose value is one of `choices`; another is an error naming the flag, the value and the choices.
CLI::Option* choice_option(CLI::App& cmd, const std::string& flag, std::string& target,
                           const std::vector<std::string>& choices, const std::string& help) {
  return cmd.add_option_function<std::string>(
      flag, [&target, flag, choices](const std::string& v) {
        if (std::find(choices.begin(), choices.end(), v) == choices.end())
          throw ConfigError(fmt::format("{} '{}': expected {}", flag, v, alternatives(choices)));
        target = v;
      },
      help);
}

void add_format(CLI::App& cmd, Args& a, const std::vector<std::string>& formats) {
  choice_option(cmd, "--format", a.format, formats, alternatives(formats) + " (default table)")->type_name("FMT");
}

void add_overrides(CLI::App& cmd, Args& a) {
  repeatable(cmd.add_option("-o,--override", a.overrides,
                            "set a stage's option (-o train.lr=1e-4), a var (-o data=/x) or a path in the file\n"
                            "(-o defaults.train.lr=1e-4, -o grid.train.lr=[1e-4,5e-5]); repeatable"))
      ->type_name("KEY=VALUE");
}

void add_global_options(CLI::App& app, Args& a) {
  app.add_option("--results", a.results, "results database (default results/results.db; artifacts go beside it)")
      ->type_name("PATH");
  app.add_option("--log-level", a.log_level, "trace, debug, info (default), warn, error, off")->type_name("LEVEL");
  repeatable(app.add_option("--plugin-path", a.plugin_paths,
                            "also load plugins from DIR (repeatable; before RUNNER_PLUGIN_PATH and the build's own)"))
      ->type_name("DIR");
  app.add_flag_callback("--version", [&a] { a.command = "version"; }, "version, build id and git commit");
}

void add_slurm_options(CLI::App& run, Args& a) {
  const std::string group = "Slurm (--executor slurm)";
  run.add_option("--partition", a.slurm.partition, "the jobs' partition")->type_name("P")->group(group);
  run.add_option("--time", a.slurm.time, "the jobs' time limit (sbatch --time)")->type_name("T")->group(group);
  count_option(run, "--gpus-per-trial", a.slurm.gpus_per_trial, "GPUs per job")->group(group);
  repeatable(run.add_option("--sbatch", a.slurm.sbatch_args,
                            "one more sbatch argument (repeatable: --sbatch=--nodes=2)"))
      ->type_name("ARG")
      ->group(group);
  count_option(run, "--poll", a.slurm.poll_s, "seconds between looks at the jobs")->group(group);
  count_option(run, "--retries", a.slurm.retries, "resubmissions of a job that ended early (default 2)")->group(group);
  run.add_flag_callback("--no-wait", [&a] { a.slurm.wait = false; }, "submit and return (a rerun collects the jobs)")
      ->group(group);
}

void add_run(CLI::App& app, Args& a) {
  CLI::App* run = app.add_subcommand("run", "run an experiment: expand the grid, run every trial's stages, record "
                                            "everything\n(runner EXP.yaml is short for runner run EXP.yaml)");
  run->add_option("experiment", a.file, "the experiment file")->required()->type_name("EXP.yaml");
  run->footer("Exit status: 0 success, 1 a trial failed, 2 bad usage or configuration, 130 interrupted.\n");
  add_overrides(*run, a);
  run->add_flag("--force", a.force, "rerun finished trials (default: skip them; failed/interrupted ones always rerun)");
  run->add_option_function<std::string>(
         "--jobs", [&a](const std::string& v) {
           a.jobs = whole_number("--jobs", v, 1, 256, "a number of worker processes from 1 to 256");
         },
         "run independent trials in N worker processes on one results database")
      ->type_name("N");
  run->add_option("--devices", a.devices, "the GPUs the workers share out (each sees its share as "
                                          "CUDA_VISIBLE_DEVICES)")->type_name("0,1,...");
  choice_option(*run, "--executor", a.executor, {"local", "slurm"},
                "local (default) or slurm: one Slurm job per trial (sbatch), results merged into the\nresults "
                "database as jobs end; waits for them unless --no-wait (a rerun then collects them)")
      ->type_name("NAME");
  add_slurm_options(*run, a);
  // The runner's own children: a --jobs worker (jobs.h) and a trial inside a Slurm job (slurm.h).
  run->add_flag("--worker", a.worker)->group("");
  run->add_option("--force-since", a.force_since)->group("");
  run->add_option("--slurm-job", a.slurm_job)->group("");
}

void add_plan(CLI::App& app, Args& a) {
  CLI::App* plan = app.add_subcommand("plan", "print the expanded trials and check plugins and options; runs nothing");
  plan->add_option("experiment", a.file, "the experiment file")->required()->type_name("EXP.yaml");
  add_overrides(*plan, a);
  plan->add_flag("-v,--verbose", a.verbose, "print each trial's resolved configuration");
  plan->footer("--format json prints one JSON object (the experiment, its stages, the trials); csv the trial table "
               "alone.\n");
  add_format(*plan, a, {"table", "csv", "json"});
}

void add_results(CLI::App& app, Args& a) {
  CLI::App* results = app.add_subcommand("results", "one row per trial with its status and final metrics (a "
                                                    "metric's column is stage/metric)");
  results->add_option_function<std::string>(
             "--experiment", [&a](const std::string& v) { a.selection.experiment = v; },
             "only this experiment (default: all)")
      ->type_name("NAME");
  repeatable(results->add_option("--where", a.selection.where,
                                 "only trials whose KEY matches VALUE (repeatable; all must hold). KEY: experiment, "
                                 "#, trial, label,\nstatus, attempt, seed, a label key or a resolved configuration "
                                 "path (train.lr); VALUE: a glob,\nor a number, compared as a number (1e-4 = 0.0001)"))
      ->type_name("KEY=VALUE");
  results->add_option("--stage", a.selection.stage, "only this stage's metrics")->type_name("NAME");
  repeatable(results->add_option("--columns", a.selection.columns, "only the columns these comma-separated globs "
                                                                   "match, in that order ('#,label,train/*')"))
      ->delimiter(',')
      ->type_name("GLOBS");
  add_format(*results, a, {"table", "csv", "json"});
  results->footer("A table wider than the terminal ($COLUMNS, else the terminal's width, else 120) is folded: the "
                  "columns that do not\nfit are printed in further blocks under it, each starting with # and label. "
                  "csv and json are never folded.\n");
}

void add_query(CLI::App& app, Args& a) {
  CLI::App* query = app.add_subcommand("query", "run SQL against the results database, opened read-only "
                                                "(results/README.md: schema, examples)");
  query->add_option("sql", a.sql, "the SQL")->required()->type_name("SQL");
  add_format(*query, a, {"table", "csv", "json"});
}

void add_plugins(CLI::App& app, Args& a) {
  CLI::App* plugins = app.add_subcommand("plugins", "every plugin with its version and options (type, default, "
                                                    "help), and load failures");
  choice_option(*plugins, "--kind", a.kind, {"model", "algorithm", "dataset", "benchmark", "judge"},
                "only model, algorithm, dataset, benchmark or judge plugins")
      ->type_name("KIND");
}

void add_score(CLI::App& app, Args& a) {
  CLI::App* score = app.add_subcommand("score", "score existing answer or judgment files with a benchmark's official "
                                                "rules\n(runner score BENCHMARK --help: the benchmark's keys)");
  score->add_option("benchmark", a.benchmark, "the benchmark plugin (runner plugins --kind benchmark)")
      ->required()
      ->type_name("BENCHMARK");
  score->add_option("arguments", a.score_args, "the benchmark's options, e.g. answers=A.jsonl questions=Q.jsonl")
      ->type_name("KEY=VALUE ...");
  add_format(*score, a, {"table", "csv", "json"});
}

void add_report(CLI::App& app, Args& a) {
  CLI::App* report = app.add_subcommand(
      "report", "an experiment (name or .yaml file) as report.html and report.md: tables of final metrics\n(mean ± "
                "std over seeds), the plots of its report: section, training curves (drawn by gnuplot),\neach "
                "trial's log and artifacts");
  report->add_option("experiment", a.experiment, "the experiment's name, or its file")->required()->type_name("EXP");
  report->add_option("--out", a.out, "where to write (default results/<experiment>/report/ beside the database)")
      ->type_name("DIR");
}

void add_status(CLI::App& app, Args& a) {
  CLI::App* status = app.add_subcommand(
      "status", "per experiment: trials by status, each running trial's stage, step/total and ETA, the\n"
                "experiment's ETA; reads the database while a run writes it");
  status->add_option("experiment", a.experiment, "only this experiment (a name or its file; default: all)")
      ->type_name("EXP");
  add_format(*status, a, {"table", "json"});
}

void add_serve(CLI::App& app, Args& a) {
  CLI::App* serve = app.add_subcommand(
      "serve", "OpenAI-compatible chat-completions server over a model plugin:\nrunner serve (--model NAME "
               "[--model-opt key=value]... | --model-config FILE.yaml) [options]");
  serve::add_serve_options(*serve, a.serve, a.serve_config);
}

// A rank of a data-parallel stage, started by the runner itself (core/ranks.h); not in help.
void add_stage_rank(CLI::App& app, Args& a) {
  CLI::App* rank = app.add_subcommand("_stage-rank", "");
  rank->group("");
  rank->add_option("request", a.file)->required();
}

// Every subcommand and option: one declaration each, and the help text with it.
void build(CLI::App& app, Args& a) {
  app.description(kDescription);
  app.fallthrough();     // a command's options and the global ones may be mixed (inherited by the subcommands)
  app.allow_extras();    // unknown options and stray words are collected, and named by reject_extras
  app.require_subcommand(0, 1);
  app.get_formatter()->column_width(28);
  add_global_options(app, a);
  add_run(app, a);
  add_plan(app, a);
  add_results(app, a);
  add_query(app, a);
  add_plugins(app, a);
  add_score(app, a);
  add_report(app, a);
  add_status(app, a);
  add_serve(app, a);
  add_stage_rank(app, a);
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    sub->allow_extras();
    sub->footer(sub->get_footer() + kCommandFooter);
  }
  app.footer(kFooter);
}

bool is_command(CLI::App& app, const std::string& word) {
  return !app.get_subcommands([&](CLI::App* s) { return s->get_name() == word; }).empty();
}

bool is_experiment_file(const std::string& word) {
  auto ends = [&](const std::string& s) { return word.size() > s.size() && word.rfind(s) == word.size() - s.size(); };
  return ends(".yaml") || ends(".yml");
}

// `runner [options] EXP.yaml ...` is `runner run [options] EXP.yaml ...`. The command is the first word that is not
// an option or an option's value (looked up among the global and run's options); anything but a command or an
// experiment file there is an error naming it.
void expand_run_shorthand(CLI::App& app, std::vector<std::string>& args) {
  CLI::App* run = app.get_subcommand("run");
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word.size() > 1 && word[0] == '-') {
      const bool value_attached = word.find('=') != std::string::npos || (word[1] != '-' && word.size() > 2);
      const CLI::Option* o = app.get_option_no_throw(word);
      if (!o) o = run->get_option_no_throw(word);
      if (!value_attached && o && o->get_items_expected_min() > 0) ++i;  // skip the option's value
      continue;
    }
    if (is_command(app, word)) return;
    if (is_experiment_file(word)) {
      args.insert(args.begin(), "run");
      return;
    }
    std::vector<std::string> names;
    for (CLI::App* s : app.get_subcommands([](CLI::App* s) { return !s->get_group().empty(); }))
      names.push_back(s->get_name());
    throw ConfigError(fmt::format("unknown command '{}' (expected an experiment .yaml file or one of: {})", word,
                                  fmt::join(names, ", ")));
  }
}

// The command that was given (nullptr: none).
CLI::App* chosen(CLI::App& app) {
  const std::vector<CLI::App*> subs = app.get_subcommands();
  return subs.empty() ? nullptr : subs[0];
}

// What CLI11 collected as unknown: the first is named (an option, or a stray word).
void reject_extras(CLI::App& app) {
  const std::vector<std::string> extra = app.remaining(true);
  if (extra.empty()) return;
  const std::string& first = extra[0];
  const bool option = first.size() > 1 && first[0] == '-';
  throw ConfigError(fmt::format("{} '{}'", option ? "unknown option" : "unexpected argument", first));
}

std::string command_name(CLI::App& app) {
  CLI::App* cmd = chosen(app);
  return cmd ? "runner " + cmd->get_name() : "runner";
}

}  // namespace

std::optional<int> parse_command_line(int argc, char** argv, Args& a) {
  CLI::App app("", "runner");
  build(app, a);
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    expand_run_shorthand(app, args);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
    reject_extras(app);
  } catch (const CLI::CallForHelp&) {
    CLI::App* cmd = chosen(app);
    if (cmd && cmd->get_name() == "score" && !a.benchmark.empty()) {
      a.command = "score";
      a.score_help = true;  // the benchmark's own keys: printed once the plugins are loaded
      return std::nullopt;
    }
    std::cout << app.help();
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << command_name(app) << ": " << e.what() << "\n(" << command_name(app) << " --help for usage)\n";
    return 2;
  } catch (const ConfigError& e) {
    std::cerr << command_name(app) << ": " << e.what() << "\n(" << command_name(app) << " --help for usage)\n";
    return 2;
  }
  if (a.command == "version") return std::nullopt;
  CLI::App* cmd = chosen(app);
  if (!cmd) {
    std::cerr << "runner: no command given (runner --help lists the commands)\n";
    return 2;
  }
  a.command = cmd->get_name();
  return std::nullopt;
}

}  // namespace mmr
