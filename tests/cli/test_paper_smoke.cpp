// Every file of experiments/paper/ run end to end through the real runner, with the tiny model and tiny data put in
// by -o overrides, so the paper's files cannot rot between GPU runs: every stage of every trial must finish and
// record its results. What the smoke run changes, and nothing else:
//   - the vars: the model (tests/data/tiny-llava, float32 on the CPU; bf16 on the GPU, as the files' defaults are,
//     with MMR_TEST_DEVICE=cuda), the training data (a few rows written here, images from
//     tests/data/tiny-llava/images), the benchmark files (a copy of shared/benchmarks' layout made from
//     tests/data/benchmarks, so the files' own paths under ${benchmarks} are used) and the image folders;
//   - the judges: the tiny model in-process (local_model) where an unparseable reply is only counted, and the
//     paper_rater stub (tests/cli/stubs/) for annotate and AlpacaEval, whose stages need parseable replies;
//   - per stage: 2 optimizer steps of 2 examples, 8 new tokens, batch 2, the first question of each benchmark
//     (POPE: all 8 questions of the small file, since its scoring pairs answers with labels by position).
// Every trial of every grid runs (the whole suite takes about a minute on 2 cores).
// A var that names a file or folder (a path) or an OpenAI-compatible judge and that this test does not override
// fails the test: the smoke run must never read /data or call the network.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/spec.h"
#include "process.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path kSource = MMR_SOURCE_DIR;
const fs::path kData = MMR_TEST_DATA_DIR;
const fs::path kTiny = kData / "tiny-llava";
const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const std::string kPlugins = MMR_TEST_PLUGIN_DIR;
const std::string kStubs = MMR_PAPER_STUB_DIR;
const std::set<std::string> kTrainers = {"dpo", "sft", "rejection_sampling", "steerlm"};

std::vector<std::string> paper_files() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(kSource / "experiments" / "paper"))
    if (e.path().extension() == ".yaml") out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void copy_to(const fs::path& from, const fs::path& to) {
  fs::create_directories(to.parent_path());
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

void write_to(const fs::path& to, const std::string& text) {
  fs::create_directories(to.parent_path());
  std::ofstream(to) << text;
}

// Training rows on the tiny model's images (relative to train_images = tests/data/tiny-llava/images).
const char* kImages[] = {"wide.png", "tall.jpg", "small.png", "gray.png"};

std::string prompt_rows() {
  json rows = json::array();
  for (int i = 0; i < 3; ++i)
    rows.push_back({{"id", fmt::format("q{}", i)}, {"image", kImages[i]},
                    {"conversations", {{{"from", "human"}, {"value", fmt::format("<image>\nWhat is in picture {}?", i)}},
                                       {{"from", "gpt"}, {"value", "Shapes."}}}}});
  return rows.dump();
}

std::string pair_rows() {
  std::string out;
  for (int i = 0; i < 8; ++i)
    out += json{{"id", fmt::format("p{}", i)}, {"image", kImages[i % 4]},
                {"question", {{"from", "human"}, {"value", fmt::format("<image>\nWhat is in picture {}?", i)}}},
                {"chosen", {{"from", "gpt"}, {"value", fmt::format("Coloured shapes, {} of them.", i % 5)}}},
                {"rejected", {{"from", "gpt"}, {"value", "A dog in a park."}}}}.dump() + "\n";
  return out;
}

std::string scored_rows() {
  std::string out;
  for (int i = 0; i < 3; ++i) {
    json candidates = json::array();
    for (int k = 0; k < 4; ++k) {
      json scores = json::object();
      for (const char* a : {"Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity"}) scores[a] = (k + i) % 5;
      candidates.push_back({{"response", fmt::format("Answer {} to question {}.", k, i)}, {"scores", scores}});
    }
    out += json{{"id", fmt::format("s{}", i)}, {"image", kImages[i]}, {"question", "What is shown?"},
                {"candidates", candidates}}.dump() + "\n";
  }
  return out;
}

std::string sft_rows() {
  json rows = json::array();
  for (int i = 0; i < 4; ++i)
    rows.push_back({{"id", fmt::format("c{}", i)}, {"image", kImages[i]},
                    {"conversations", {{{"from", "human"}, {"value", "<image>\nDescribe the picture."}},
                                       {{"from", "gpt"}, {"value", "Some coloured shapes."}}}}});
  return rows.dump();
}

std::string shell_quote(const std::string& s) { return "'" + s + "'"; }

class PaperSmoke : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    file_ = kSource / "experiments" / "paper" / GetParam();
    dir_ = fs::temp_directory_path() / fmt::format("mmr_paper_smoke_{}_{}", getpid(), file_.stem().string());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    make_fixtures();
  }
  void TearDown() override {  // MMR_PAPER_SMOKE_KEEP=1 keeps the folder (results, artifacts, logs) to look at
    if (!HasFailure() && !std::getenv("MMR_PAPER_SMOKE_KEEP")) fs::remove_all(dir_);
  }

  // Benchmark files in shared/benchmarks' layout, made from tests/data/benchmarks; images under the names the
  // question files use (copies of the tiny model's images); the training rows.
  void make_fixtures() {
    const fs::path b = kData / "benchmarks", m = dir_ / "benchmarks", images = dir_ / "images";
    copy_to(b / "pope/small/questions.jsonl", m / "pope/llava_v1.5_eval/llava_pope_test.jsonl");
    for (const char* split : {"adversarial", "random"})
      copy_to(b / "pope/small" / fmt::format("coco_pope_{}.json", split), m / "pope/llava_v1.5_eval" /
           fmt::format("coco_pope_{}.json", split));
    write_to(m / "mm_vet/llava-mm-vet.jsonl", R"({"question_id": 0, "image": "v1_0.png", "text": "What is shown?"})" "\n"
                                           R"({"question_id": 1, "image": "v1_1.png", "text": "What is x?"})" "\n");
    copy_to(b / "mm_vet/grader_prompt.txt", m / "mm_vet/grader_prompt.txt");
    for (const char* f : {"questions.jsonl", "context.jsonl", "answers_gpt4.jsonl", "rule.json"})
      copy_to(b / "llava_bench" / f, m / "llava_bench" / f);
    copy_to(b / "mmbench/choice_extractor_prompt_en.txt", m / "mmbench/choice_extractor_prompt_en.txt");
    for (const char* f : {"question.jsonl", "judge_prompts.jsonl", "reference_answer_gpt-4.jsonl"})
      copy_to(b / "mt_bench" / f, m / "mt_bench" / f);
    copy_to(b / "alpaca_eval/eval_set_subset.json", m / "alpaca_eval/alpaca_eval_v1_eval_set.json");
    copy_to(b / "alpaca_eval/alpaca_eval_gpt4", m / "alpaca_eval/evaluators_configs/alpaca_eval_gpt4");
    copy_to(b / "mm_vet/metadata_small.json", dir_ / "mm-vet/mm-vet.json");
    for (int i = 0; i < 5; ++i) copy_to(kTiny / "images/gray.png", dir_ / fmt::format("mm-vet/images/v1_{}.png", i));
    for (const char* name : {"a.jpg", "b.jpg", "c.jpg"}) copy_to(kTiny / "images/tall.jpg", images / name);
    for (int i = 1; i <= 24; ++i) copy_to(kTiny / "images/tall.jpg", images / fmt::format("{:03d}.jpg", i));
    write_to(dir_ / "data/prompts.json", prompt_rows());
    write_to(dir_ / "data/pairs.jsonl", pair_rows());
    write_to(dir_ / "data/scored_candidates.jsonl", scored_rows());
    write_to(dir_ / "data/sft.json", sft_rows());
  }

  // What the smoke run puts into each var a paper file may have.
  std::map<std::string, std::string> var_values() const {
    const std::string tiny_model = (kTiny / "model").string();
    const std::string local = "{plugin: local_model, max_tokens: 16, model: {plugin: llava, path: " + tiny_model + "}}";
    const std::string images = (dir_ / "images").string();
    // MMR_TEST_DEVICE=cuda: the paper's own precision and device (bf16 on the GPU) for the models trained and
    // evaluated; the tiny judge stays on the CPU.
    const char* dev = std::getenv("MMR_TEST_DEVICE");
    const bool cuda = dev && std::string(dev) == "cuda";
    return {{"model_path", tiny_model}, {"vicuna_path", (kData / "tiny-llama/model").string()},
            {"dtype", cuda ? "bfloat16" : "float32"}, {"device", cuda ? "cuda" : "cpu"},
            {"prompts", (dir_ / "data/prompts.json").string()}, {"pairs", (dir_ / "data/pairs.jsonl").string()},
            {"sft_data", (dir_ / "data/sft.json").string()},
            {"scored_candidates", (dir_ / "data/scored_candidates.jsonl").string()},
            {"train_images", (kTiny / "images").string()}, {"benchmarks", (dir_ / "benchmarks").string()},
            {"coco", images}, {"random_images", images}, {"llava_bench_images", images},
            {"mmvet", (dir_ / "mm-vet").string()},
            {"mmbench_tsv", (kData / "benchmarks/mmbench/dev_small.tsv").string()},
            {"mm_vet_judge", local}, {"llava_bench_judge", local}, {"mt_bench_judge", local}, {"mmbench_judge", local},
            {"alpaca_eval_judge", "paper_rater"}, {"annotator", "paper_rater"}};
  }

  // The -o overrides of the smoke run (see the top of this file).
  std::vector<std::string> overrides() {
    const YAML::Node doc = YAML::LoadFile(file_.string());
    const auto values = var_values();
    std::vector<std::string> out;
    for (const auto& kv : doc["vars"]) {
      const std::string var = kv.first.Scalar();
      const YAML::Node v = kv.second;
      if (values.count(var)) {
        out.push_back(var + "=" + values.at(var));
        continue;
      }
      const bool path = v.IsScalar() && (v.Scalar().rfind('/', 0) == 0 || v.Scalar().rfind("../", 0) == 0);
      const bool remote = v.IsMap() && v["plugin"] && v["plugin"].Scalar() == "openai_compatible";
      EXPECT_FALSE(path || remote) << file_ << ": var '" << var << "' names a path or a remote judge; teach "
                                   << __FILE__ << " what a smoke run puts there";
    }
    // Per stage (once per name: an option set on a step reaches all of its alternatives).
    std::set<std::string> done;
    for (const auto& t : mmr::load_experiment(file_).trials)
      for (const auto& s : t.stages) {
        if (!done.insert(s.name).second) continue;
        if (s.kind == mmr::PluginKind::Algorithm && kTrainers.count(s.plugin)) {
          for (const char* o : {"max_steps=2", "batch_size=2", "grad_accum=1"}) out.push_back(s.name + "." + o);
        } else if (s.kind == mmr::PluginKind::Algorithm && s.plugin == "sample") {
          for (const char* o : {"max_new_tokens=8", "batch_size=2"}) out.push_back(s.name + "." + o);
        } else if (s.kind == mmr::PluginKind::Algorithm && s.plugin == "reference_logps") {
          out.push_back(s.name + ".batch_size=2");
        } else if (s.kind == mmr::PluginKind::Benchmark) {
          for (const char* o : {"max_new_tokens=8", "batch_size=2"}) out.push_back(s.name + "." + o);
          if (s.plugin != "pope") out.push_back(s.name + ".limit=1");
        }
      }
    return out;
  }

  mmr::test::ProcessResult runner(const std::vector<std::string>& rest) {
    std::vector<std::string> argv = {kRunner, "--results", (dir_ / "results/results.db").string(), "--plugin-path",
                                     kPlugins, "--plugin-path", kStubs, "--log-level", "warn"};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return mmr::test::run(argv);
  }
  json query(const std::string& sql) {
    const auto r = runner({"query", sql, "--format", "json"});
    EXPECT_EQ(r.status, 0) << r.err;
    return r.status == 0 ? json::parse(r.out) : json::array();
  }

  fs::path file_, dir_;
};

TEST_P(PaperSmoke, EveryStageOfEveryTrialRunsWithTheTinyModel) {
  const std::vector<std::string> o = overrides();
  ASSERT_FALSE(HasFailure());
  std::vector<std::string> args = {file_.string()};
  for (const auto& x : o) args.insert(args.end(), {"-o", x});
  const auto start = std::chrono::steady_clock::now();
  const auto r = runner(args);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::string command = "runner " + file_.string();
  for (const auto& x : o) command += " -o " + shell_quote(x);
  RecordProperty("seconds", fmt::format("{:.1f}", seconds));
  std::cout << fmt::format("[ smoke    ] {}: {:.1f} s\n", file_.filename().string(), seconds);
  ASSERT_EQ(r.status, 0) << command << "\n" << r.err << r.out
                         << query("SELECT label, status, error FROM trials").dump(2);

  // The trials and stages the file plans with these overrides, each finished and recorded.
  const mmr::Experiment planned = mmr::load_experiment(file_, o);
  std::map<std::string, std::vector<std::string>> expected;  // label -> stage names
  for (const auto& t : planned.trials)
    for (const auto& s : t.stages) expected[t.label].push_back(s.name);
  const json trials = query("SELECT label, status FROM trials ORDER BY ordinal");
  ASSERT_EQ(trials.size(), planned.trials.size());
  for (const auto& t : trials) EXPECT_EQ(t["status"], "finished") << t.dump();
  const json stages = query("SELECT t.label, s.name, s.plugin, s.status, "
                            "(SELECT count(*) FROM final_metrics f WHERE f.trial_id = t.id AND f.stage = s.name) AS n "
                            "FROM stages s JOIN trials t ON t.id = s.trial_id AND s.attempt = t.attempt "
                            "ORDER BY t.ordinal, s.ordinal");
  std::map<std::string, std::vector<std::string>> ran;
  for (const auto& s : stages) {
    ran[s["label"]].push_back(s["name"]);
    EXPECT_EQ(s["status"], "finished") << s.dump();
    EXPECT_GT(s["n"].get<int>(), 0) << "no metric recorded: " << s.dump();
  }
  EXPECT_EQ(ran, expected);

  // What each kind of stage must have produced.
  const json adapters = query("SELECT t.label, a.stage, a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id "
                              "AND a.attempt = t.attempt WHERE a.name = 'adapter'");
  std::set<std::string> with_adapter;
  for (const auto& a : adapters) {
    EXPECT_TRUE(fs::exists(fs::path(a["path"].get<std::string>()) / "adapter_model.safetensors")) << a.dump();
    with_adapter.insert(a["label"].get<std::string>() + "/" + a["stage"].get<std::string>());
  }
  for (const auto& s : stages) {
    if (!kTrainers.count(s["plugin"])) continue;
    EXPECT_TRUE(with_adapter.count(s["label"].get<std::string>() + "/" + s["name"].get<std::string>())) << s.dump();
  }
  const json answered = query("SELECT t.label, f.stage, f.value FROM final_metrics f JOIN trials t ON t.id = f.trial_id "
                              "WHERE f.name = 'n_answers'");
  size_t benchmarks = 0;
  for (const auto& s : stages) benchmarks += s["plugin"] == "pope" || s["plugin"] == "mm_vet" ||
      s["plugin"] == "llava_bench" || s["plugin"] == "mt_bench" || s["plugin"] == "mmbench" ||
      s["plugin"] == "alpaca_eval";
  EXPECT_EQ(answered.size(), benchmarks) << answered.dump();
  for (const auto& a : answered) EXPECT_GE(a["value"].get<double>(), 1) << a.dump();

  // The preference-data pipeline's products, which the training files read: pairs, each with reference log-probs.
  for (const auto& p : query("SELECT value FROM final_metrics WHERE name = 'pairs_built'"))
    EXPECT_GE(p["value"].get<double>(), 1);
  for (const auto& a : query("SELECT a.path FROM artifacts a JOIN stages s ON s.trial_id = a.trial_id AND "
                             "s.attempt = a.attempt AND s.name = a.stage WHERE s.plugin = 'reference_logps'")) {
    std::ifstream in(a["path"].get<std::string>());
    int rows = 0;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) {
        const json row = json::parse(line);
        EXPECT_TRUE(row.contains("ref_win_logp") && row.contains("ref_rej_logp")) << line;
        ++rows;
      }
    EXPECT_GE(rows, 1) << a.dump();
  }
}

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name;
  for (char c : fs::path(info.param).stem().string()) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Paper, PaperSmoke, ::testing::ValuesIn(paper_files()), test_name);

}  // namespace
