// Every command written in an experiment file's header comment runs, so the examples in experiments/*.yaml and
// experiments/paper/*.yaml (every folder under experiments/) cannot rot. The header is the comment at the top of the
// file, before its first YAML line; a command is a line that starts with `runner` (a line ending in `\` continues
// on the next). From the repository root:
//   - `runner [run|plan] FILE [-o key=value]... [--force]` runs as `runner plan FILE` with the same -o
//     overrides: the file expands and every stage's plugin and options check, and nothing trains;
//   - `runner results ...`, `runner query ...`, `runner status ...` and `runner report ...` run against a
//     temporary results database that holds the
//     file's trials as planned (not run), so an --experiment NAME that is not the file's name fails;
//   - `runner plugins ...` runs as written; any other command fails the test until this file learns to check it.
// In a build configured without some plugins (MMR_SKIP_DIRS), a command that fails only because it names one of
// them is skipped, with the reason; the full build has them all (tests/CMakeLists.txt makes this test depend on
// each).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/spec.h"
#include "core/store.h"
#include "process.h"

namespace fs = std::filesystem;
using namespace mmr;

namespace {

const fs::path kSource = MMR_SOURCE_DIR;
const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();

// One command from a header: where it is written, and its words.
struct Command {
  int line = 0;
  std::string text;
  std::vector<std::string> words;
};

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

// Splits like a shell does for these lines: blanks separate words, '...' and "..." quote, an unquoted `#`
// after a blank starts a comment.
std::vector<std::string> shell_words(const std::string& s) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      else word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else if (c == '#' && !in_word) {
      break;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

// The `runner ...` commands of a file's header comment.
std::vector<Command> header_commands(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> header;
  for (std::string line; std::getline(in, line);) {
    const std::string t = trim(line);
    if (!t.empty() && t[0] != '#') break;
    header.push_back(t.empty() ? "" : trim(t.substr(1)));
  }
  std::vector<Command> out;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i].rfind("runner ", 0) != 0) continue;
    Command c{static_cast<int>(i) + 1, header[i], {}};
    while (!c.text.empty() && c.text.back() == '\\' && i + 1 < header.size())
      c.text = c.text.substr(0, c.text.size() - 1) + " " + header[++i];
    c.words = shell_words(c.text);
    out.push_back(std::move(c));
  }
  return out;
}

// The YAML files under experiments/, as paths relative to it ("ablation.yaml", "paper/table4_methods.yaml").
std::vector<std::string> experiment_files() {
  std::vector<std::string> out;
  const fs::path root = kSource / "experiments";
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file() && (e.path().extension() == ".yaml" || e.path().extension() == ".yml"))
      out.push_back(fs::relative(e.path(), root).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

// "paper/table4_methods.yaml" -> "paper_table4_methods".
std::string test_name_of(const std::string& file) {
  const fs::path p(file);
  std::string name;
  for (char c : (p.parent_path() / p.stem()).generic_string())
    name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

bool is_yaml(const std::string& w) {
  const std::string ext = fs::path(w).extension().string();
  return ext == ".yaml" || ext == ".yml";
}

// The plugins this build left out (MMR_SKIP_DIRS), named as the registry names them.
std::vector<std::string> unbuilt_plugins() {
  std::vector<std::string> out;
  std::stringstream ss(MMR_UNBUILT_PLUGINS);
  for (std::string p; std::getline(ss, p, ',');)
    if (!p.empty()) out.push_back(p);
  return out;
}

// The unbuilt plugin a failure names ("unknown algorithm 'dpo'"), or "".
std::string unbuilt_plugin_in(const std::string& err) {
  for (const auto& p : unbuilt_plugins())
    for (const char* kind : {"model", "algorithm", "dataset", "benchmark", "judge"})
      if (err.find(fmt::format("unknown {} '{}'", kind, p)) != std::string::npos) return p;
  return "";
}

class ExperimentFile : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    file_ = fs::path("experiments") / GetParam();
    dir_ = fs::temp_directory_path() / ("mmr_experiment_files_" + std::to_string(getpid()) + "_" +
                                        test_name_of(GetParam()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    previous_cwd_ = fs::current_path();
    fs::current_path(kSource);  // the commands are written to run from the repository root
  }
  void TearDown() override {
    fs::current_path(previous_cwd_);
    fs::remove_all(dir_);
  }

  // `runner plan` for a run or plan command: its file and every argument after it but --force.
  std::vector<std::string> as_plan(const Command& c) {
    std::vector<std::string> argv = {kRunner, "--results", (dir_ / "none" / "results.db").string(), "plan"};
    size_t i = 1;
    if (c.words[i] == "run" || c.words[i] == "plan") ++i;
    for (; i < c.words.size(); ++i)
      if (c.words[i] != "--force") argv.push_back(c.words[i]);
    return argv;
  }

  // A results database holding the file's trials as `runner` records them before running them.
  std::string planned_db() {
    const std::string db = (dir_ / "planned" / "results.db").string();
    if (fs::exists(db)) return db;
    fs::create_directories(fs::path(db).parent_path());
    const Experiment exp = load_experiment(file_);
    Store store(db);
    const int64_t id = store.upsert_experiment(exp.name, fs::absolute(file_).string(), exp.text);
    for (const auto& t : exp.trials) store.ensure_trial(id, t);
    return db;
  }

  std::vector<std::string> with_db(const Command& c, const std::string& db) {
    std::vector<std::string> argv = {kRunner, "--results", db};
    argv.insert(argv.end(), c.words.begin() + 1, c.words.end());
    return argv;
  }

  fs::path file_, dir_, previous_cwd_;
};

// True when a plan failed only because files outside the repository do not exist here (the data a file is written
// for: /models/..., /data/...): `runner plan` lists every missing path after all other checks passed. A missing
// path inside the repository is a mistake in the file, and fails the test.
bool only_external_data_missing(const std::string& err) {
  if (err.find("the experiment reads do not exist") == std::string::npos) return false;
  std::istringstream lines(err.substr(err.find('\n') + 1));
  int listed = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  ", 0) != 0) continue;
    const fs::path path = fs::weakly_canonical(line.substr(line.rfind(": ") + 2));
    const std::string repo = fs::weakly_canonical(kSource).string() + "/";
    if (path.string().rfind(repo, 0) == 0) return false;
    ++listed;
  }
  return listed > 0;
}

TEST_P(ExperimentFile, EveryCommandInTheHeaderCommentRuns) {
  const std::vector<Command> commands = header_commands(file_);
  ASSERT_FALSE(commands.empty()) << file_ << ": no `runner ...` line in the header comment; write how to run it";
  std::vector<std::string> skipped, external;
  for (const Command& c : commands) {
    SCOPED_TRACE(fmt::format("{}:{}: {}", file_.string(), c.line, c.text));
    ASSERT_GE(c.words.size(), 2u);
    const std::string& verb = c.words[1];
    std::vector<std::string> argv;
    if (verb == "run" || verb == "plan" || is_yaml(verb)) {
      argv = as_plan(c);
      ASSERT_TRUE(std::find_if(argv.begin() + 4, argv.end(), is_yaml) != argv.end()) << "no experiment file";
    } else if (verb == "results" || verb == "query" || verb == "status" || verb == "report") {
      argv = with_db(c, planned_db());
    } else if (verb == "plugins") {
      argv = with_db(c, (dir_ / "none" / "results.db").string());
    } else {
      ADD_FAILURE() << "this test does not know how to check `runner " << verb << "`: teach it (see the top of "
                    << __FILE__ << ")";
      continue;
    }
    const mmr::test::ProcessResult r = mmr::test::run(argv);
    if (r.status != 0 && !unbuilt_plugin_in(r.err).empty()) {
      skipped.push_back(fmt::format("line {}: plugin '{}' is not built here", c.line, unbuilt_plugin_in(r.err)));
      continue;
    }
    if (r.status != 0 && only_external_data_missing(r.err)) {
      external.push_back(fmt::format("line {}", c.line));
      continue;
    }
    EXPECT_EQ(r.status, 0) << "ran: " << fmt::format("{}", fmt::join(argv, " ")) << "\n" << r.err << r.out;
  }
  if (!external.empty() && !HasFailure())
    std::cout << file_.string() << ": every check passed but that data outside the repository (checkpoints, "
              << "images, benchmark files) is not on this machine: " << fmt::format("{}", fmt::join(external, ", "))
              << "\n";
  if (!skipped.empty() && !HasFailure())
    GTEST_SKIP() << "not checked in this build (MMR_SKIP_DIRS): " << fmt::format("{}", fmt::join(skipped, "; "));
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) { return test_name_of(info.param); }

INSTANTIATE_TEST_SUITE_P(Experiments, ExperimentFile, ::testing::ValuesIn(experiment_files()), test_name);

// The parser itself, on a header written for it.
TEST(HeaderCommands, AreFoundJoinedAndSplitLikeAShellDoes) {
  const fs::path file = fs::temp_directory_path() / ("mmr_header_" + std::to_string(getpid()) + ".yaml");
  std::ofstream(file) << "# What it is.\n#\n#   runner x.yaml -o a=1 \\\n#       -o 'b=two words'   # a comment\n"
                         "#   runner results --experiment x\n#   not runner: prose\nname: x\n# runner later.yaml\n";
  const auto commands = header_commands(file);
  fs::remove(file);
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0].line, 3);
  EXPECT_EQ(commands[0].words, (std::vector<std::string>{"runner", "x.yaml", "-o", "a=1", "-o", "b=two words"}));
  EXPECT_EQ(commands[1].words, (std::vector<std::string>{"runner", "results", "--experiment", "x"}));
}

}  // namespace
