// Evaluating the tiny model inside experiments, end to end: the real runner runs benchmark stages that generate
// with tests/data/tiny-llava on its six synthetic images, judge through `runner serve` (real HTTP on loopback) or
// the local_model judge, write the official answer/judgment formats and record the metrics in SQLite. The files
// are then scored again with `runner score`, which must give the numbers the stage recorded; the server's
// request log shows that a resumed or forced rerun never sends a judge prompt twice.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmr::test;

namespace {

const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/";
const std::string kChat = "/v1/chat/completions";

class Evaluate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_evaluate_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "images");
    db_ = (dir_ / "results" / "r.db").string();
    // Synthetic images under the names the question files use.
    for (const auto& [name, source] : std::map<std::string, std::string>{
             {"a.png", "wide.png"}, {"b.png", "square_big.png"}, {"v1_0.png", "gray.png"}, {"v1_1.png", "rgba.png"},
             {"001.jpg", "tall.jpg"}, {"002.jpg", "tall.jpg"}})
      fs::copy_file(kTinyImages + "/" + source, dir_ / "images" / name);
  }
  void TearDown() override { fs::remove_all(dir_); }

  ProcessResult runner(std::vector<std::string> rest) {
    std::vector<std::string> argv = {kRunner, "--results", db_, "--plugin-path", kPlugins, "--log-level", "warn"};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return run(argv);
  }
  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  // stage -> metric -> value (final metrics of the newest attempt).
  std::map<std::string, std::map<std::string, double>> metrics() {
    const ProcessResult q = runner({"query", "SELECT stage, name, value FROM final_metrics", "--format", "json"});
    EXPECT_EQ(q.status, 0) << q.err;
    std::map<std::string, std::map<std::string, double>> out;
    for (const auto& row : json::parse(q.out)) out[row["stage"]][row["name"]] = row["value"].get<double>();
    return out;
  }
  std::map<std::string, std::string> artifacts() {
    const ProcessResult q = runner({"query", "SELECT a.stage || '/' || a.name AS k, a.path FROM artifacts a JOIN trials t "
                                    "ON t.id = a.trial_id AND t.attempt = a.attempt", "--format", "json"});
    EXPECT_EQ(q.status, 0) << q.err;
    std::map<std::string, std::string> out;
    for (const auto& row : json::parse(q.out)) out[row["k"]] = row["path"];
    return out;
  }
  // `runner score ... --format json` → metric → value.
  std::map<std::string, double> score(std::vector<std::string> args) {
    args.insert(args.begin(), "score");
    args.insert(args.end(), {"--format", "json"});
    const ProcessResult r = runner(args);
    EXPECT_EQ(r.status, 0) << r.err;
    std::map<std::string, double> out;
    if (r.status == 0)
      for (const auto& row : json::parse(r.out)) out[row["metric"]] = row["value"].get<double>();
    return out;
  }
  std::string model_yaml() const { return "{plugin: llava, path: " + kTinyModel + "}"; }

  // Two MT-Bench questions from the official file: one judged against a reference (math), one not (stem).
  std::string mt_questions() {
    std::ifstream in(kData + "mt_bench/question.jsonl");
    std::string out;
    std::set<std::string> seen;
    for (std::string line; std::getline(in, line);) {
      const json q = json::parse(line);
      const std::string category = q["category"];
      if ((category == "math" || category == "stem") && seen.insert(category).second) out += line + "\n";
    }
    return write("mt_questions.jsonl", out);
  }

  fs::path dir_;
  std::string db_;
};

std::vector<json> jsonl(const std::string& path) {
  std::vector<json> rows;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

}  // namespace

TEST_F(Evaluate, EachBenchmarkWritesItsOfficialFormatAndRecordsWhatScoringTheFilesGives) {
  Server server(dir_ / "server");
  const std::string pope_questions = write("pope/questions.jsonl",
      R"({"question_id": 1, "image": "a.png", "text": "Is there a dog in the image?", "category": "random"})" "\n"
      R"({"question_id": 2, "image": "b.png", "text": "Is there a cat in the image?", "category": "random"})" "\n"
      R"({"question_id": 3, "image": "a.png", "text": "Is there a car in the image?", "category": "random"})" "\n");
  const std::string pope_labels = write("pope/labels/coco_pope_random.json",
      R"({"question_id": 1, "image": "a.png", "text": "Is there a dog in the image?", "label": "yes"})" "\n"
      R"({"question_id": 2, "image": "b.png", "text": "Is there a cat in the image?", "label": "no"})" "\n"
      R"({"question_id": 3, "image": "a.png", "text": "Is there a car in the image?", "label": "yes"})" "\n");
  const std::string mmvet_questions = write("mm_vet/questions.jsonl",
      R"({"question_id": 0, "image": "v1_0.png", "text": "What is shown?"})" "\n"
      R"({"question_id": 1, "image": "v1_1.png", "text": "What is x?"})" "\n");
  const std::string images = (dir_ / "images").string();
  const std::string local_judge = "{plugin: local_model, max_tokens: 16, model: " + model_yaml() + "}";
  const std::string spec = write("exp.yaml", "name: eval_tiny\nstages:\n"
      "  - {name: pope, benchmark: pope, model: " + model_yaml() + ", questions: " + pope_questions +
      ", image_folder: " + images + ", labels: " + fs::path(pope_labels).parent_path().string() +
      ", max_new_tokens: 4, batch_size: 2, model_id: tiny}\n"
      "  - {name: mm_vet, benchmark: mm_vet, model: " + model_yaml() + ", questions: " + mmvet_questions +
      ", image_folder: " + images + ", metadata: " + kData + "mm_vet/metadata_small.json, grader_prompt: " + kData +
      "mm_vet/grader_prompt.txt, judge: " + local_judge + ", max_new_tokens: 6}\n"
      "  - {name: wild, benchmark: llava_bench, model: " + model_yaml() + ", questions: " + kData +
      "llava_bench/questions.jsonl, image_folder: " + images + ", context: " + kData + "llava_bench/context.jsonl, "
      "reference_answers: " + kData + "llava_bench/answers_gpt4.jsonl, rules: " + kData + "llava_bench/rule.json, "
      "limit: 2, max_new_tokens: 6, judge: {plugin: openai_compatible, base_url: '" + server.base_url() +
      "', model: llava}}\n"
      "  - {name: mt, benchmark: mt_bench, model: " + model_yaml() + ", questions: " + mt_questions() +
      ", judge_prompts: " + kData + "mt_bench/judge_prompts.jsonl, reference_answers: " + kData +
      "mt_bench/reference_answer_gpt-4.jsonl, image_folder: " + images + ", max_new_tokens: 6, model_id: tiny, "
      "judge: " + local_judge + "}\n");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  auto m = metrics();
  auto a = artifacts();

  // POPE: LLaVA's answer JSONL, one line per question, scored with the labels.
  const auto pope_answers = jsonl(a.at("pope/answers"));
  ASSERT_EQ(pope_answers.size(), 3u);
  for (const auto& line : pope_answers) {
    for (const char* key : {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"})
      EXPECT_TRUE(line.contains(key)) << key;
    EXPECT_EQ(line["model_id"], "tiny");
  }
  EXPECT_EQ(pope_answers[1]["prompt"], "Is there a cat in the image?");
  const auto pope_scored = score({"pope", "answers=" + a.at("pope/answers"), "questions=" + pope_questions,
                                  "labels=" + pope_labels});
  EXPECT_EQ(m["pope"].at("random/f1"), pope_scored.at("random/f1"));
  EXPECT_EQ(m["pope"].at("random/n"), 3);
  EXPECT_EQ(m["pope"].at("mean/f1"), pope_scored.at("mean/f1"));

  // MM-Vet: the results file keyed v1_<id>; the grade file, scored again, gives the recorded total.
  const json results = json::parse(slurp(a.at("mm_vet/results")));
  EXPECT_EQ(results.size(), 2u);
  EXPECT_TRUE(results.contains("v1_0") && results.contains("v1_1"));
  const json grades = json::parse(slurp(a.at("mm_vet/grades")));
  ASSERT_EQ(grades.size(), 2u);
  EXPECT_EQ(grades["v1_0"]["score"].size(), 1u);
  EXPECT_EQ(m["mm_vet"].at("total"), score({"mm_vet", "grades=" + a.at("mm_vet/grades")}).at("total"));
  // Every request the evaluator's loop makes was counted; the tiny judge rarely answers with a number.
  EXPECT_GE(m["mm_vet"].at("judge/requests"), 2);
  EXPECT_EQ(m["mm_vet"].at("judge/requests"), m["mm_vet"].at("judge/sent"));
  EXPECT_EQ(m["mm_vet"].at("judge/unparseable"),
            m["mm_vet"].at("judge/requests") - 2 + m["mm_vet"].at("grading/failed_samples"));

  // LLaVA-Bench: answers and reviews in LLaVA's formats; the reviews were fetched over HTTP from runner serve.
  const auto wild_answers = jsonl(a.at("wild/answers"));
  ASSERT_EQ(wild_answers.size(), 2u);
  EXPECT_EQ(wild_answers[0]["question_id"], 0);
  const auto reviews = jsonl(a.at("wild/reviews"));
  ASSERT_EQ(reviews.size(), 2u);
  for (const auto& review : reviews) EXPECT_EQ(review["tuple"].size(), 2u);
  EXPECT_EQ(reviews[0]["category"], "llava_bench_conv");
  EXPECT_EQ(server.count(kChat, 200), 2);
  EXPECT_EQ(m["wild"].at("all"), score({"llava_bench", "reviews=" + a.at("wild/reviews")}).at("all"));
  EXPECT_EQ(m["wild"].at("judge/sent"), 2);

  // MT-Bench: FastChat's answer format (two turns) and judgment format (one line per turn).
  const auto mt_answers = jsonl(a.at("mt/answers"));
  ASSERT_EQ(mt_answers.size(), 2u);
  EXPECT_EQ(mt_answers[0]["choices"][0]["turns"].size(), 2u);
  EXPECT_EQ(mt_answers[0]["model_id"], "tiny");
  const auto judgments = jsonl(a.at("mt/judgments"));
  ASSERT_EQ(judgments.size(), 4u);
  EXPECT_EQ(judgments[1]["turn"], 2);
  EXPECT_NE(judgments[1]["judge"][1].get<std::string>().find("-multi-turn"), std::string::npos) << judgments[1].dump();
  const auto mt_scored = score({"mt_bench", "judgments=" + a.at("mt/judgments"), "questions=" + mt_questions()});
  EXPECT_EQ(m["mt"].at("tiny/n_judgments"), 4);
  EXPECT_EQ(m["mt"].at("tiny/n_failed"), mt_scored.at("tiny/n_failed"));
  EXPECT_EQ(m["mt"].at("judge/unparseable"), m["mt"].at("tiny/n_failed"));
}

// AlpacaEval with real parts: the tiny model answers, `runner serve` (the tiny model again, over loopback HTTP) is the
// alpaca_eval_gpt4 annotator's judge. Its replies are never rankings, so no pair has a usable preference: the stage
// fails saying so, after writing the official files, and a rerun answers every judge request from the cache.
// (tests/benchmarks/test_alpaca_eval_cli.cpp checks the arithmetic with scripted replies.)
TEST_F(Evaluate, AlpacaEvalWithTheTinyModelAndAJudgeOverHttp) {
  Server server(dir_ / "server");
  const std::string ae = kData + "alpaca_eval/";
  const std::string spec = write("ae.yaml", "name: ae_tiny\nstages:\n"
      "  - {name: ae, benchmark: alpaca_eval, model: " + model_yaml() + ", instructions: " + ae +
      "eval_set_subset.json, annotators_config: " + ae + "alpaca_eval_gpt4, limit: 2, max_new_tokens: 6, "
      "model_id: tiny, judge: {plugin: openai_compatible, base_url: '" + server.base_url() + "', model: llava}}\n");
  const ProcessResult r = runner({spec});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no usable preference among 2 annotation(s)"), std::string::npos) << r.err;
  const int sent = server.count(kChat, 200);
  EXPECT_EQ(sent, 2) << "one judge request per pair (the tiny model never repeats a davinci reference)";
  fs::path outputs, annotations;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "results")) {
    if (e.path().filename() == "model_outputs.json") outputs = e.path();
    if (e.path().filename() == "annotations.json") annotations = e.path();
  }
  ASSERT_FALSE(outputs.empty());
  ASSERT_FALSE(annotations.empty());
  const json out = json::parse(slurp(outputs.string()));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["generator"], "tiny");
  const json ann = json::parse(slurp(annotations.string()));
  ASSERT_EQ(ann.size(), 2u);
  for (const auto& row : ann) EXPECT_TRUE(row["preference"].is_null()) << row.dump();

  const ProcessResult again = runner({spec});
  EXPECT_NE(again.status, 0);
  EXPECT_EQ(server.count(kChat), sent) << "a rerun must answer every judge request from the cache";
}

TEST_F(Evaluate, AResumedEvaluationNeverSendsAJudgePromptTwice) {
  // The first two judge requests fail (503) and the judge does not retry: the stage fails with the other replies
  // cached. The rerun sends only the two that failed; a forced rerun sends nothing.
  Server server(dir_ / "server", {"--fail-first", "2"});
  const std::string spec = write("exp.yaml", "name: resume\nstages:\n"
      "  - {name: mt, benchmark: mt_bench, model: " + model_yaml() + ", questions: " + mt_questions() +
      ", judge_prompts: " + kData + "mt_bench/judge_prompts.jsonl, reference_answers: " + kData +
      "mt_bench/reference_answer_gpt-4.jsonl, max_new_tokens: 6, model_id: tiny, judge: {plugin: openai_compatible, "
      "base_url: '" + server.base_url() + "', model: llava, max_retries: 0, concurrency: 1}}\n");
  const ProcessResult first = runner({spec});
  EXPECT_EQ(first.status, 1);
  const ProcessResult error = runner({"query", "SELECT error FROM trials", "--format", "json"});
  EXPECT_NE(error.out.find("2 of 4 request(s) got no reply"), std::string::npos) << error.out;
  EXPECT_EQ(server.count(kChat, 503), 2);
  EXPECT_EQ(server.count(kChat, 200), 2);

  const ProcessResult second = runner({spec});
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(server.count(kChat, 200), 4);
  auto m = metrics();
  EXPECT_EQ(m["mt"].at("judge/requests"), 4);
  EXPECT_EQ(m["mt"].at("judge/cache_hits"), 2);
  EXPECT_EQ(m["mt"].at("judge/sent"), 2);

  const ProcessResult forced = runner({spec, "--force"});
  ASSERT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(server.count(kChat), 6);  // 2 failed + 4 answered, nothing more
  m = metrics();
  EXPECT_EQ(m["mt"].at("judge/cache_hits"), 4);
  EXPECT_EQ(m["mt"].at("judge/sent"), 0);
  // Every prompt that got an answer was a different prompt.
  std::set<std::string> answered;
  for (const auto& req : server.requests())
    if (req["status"] == 200) {
      EXPECT_TRUE(answered.insert(req["body_sha256"]).second) << req.dump();
    }
  EXPECT_EQ(answered.size(), 4u);

  // The cache holds the four replies under the judge's identity, keyed by the exact request: FastChat's system
  // prompt and judge prompt (two single-turn, two multi-turn), temperature 0 and 2048 tokens.
  const ProcessResult cache = runner({"query", "SELECT judge, prompt FROM judgments", "--format", "json"});
  ASSERT_EQ(cache.status, 0) << cache.err;
  const json rows = json::parse(cache.out);
  ASSERT_EQ(rows.size(), 4u);
  int single_turn = 0;
  for (const auto& row : rows) {
    EXPECT_EQ(row["judge"], "openai_compatible base_url=" + server.base_url() + " model=llava temperature=0 max_tokens=1024");
    const json key = json::parse(row["prompt"].get<std::string>());
    EXPECT_EQ(key["temperature"], 0.0);
    EXPECT_EQ(key["max_tokens"], 2048);
    const std::string user = key["user"], system = key["system"];
    if (user.rfind("[Instruction]", 0) == 0) {
      EXPECT_EQ(system, "You are a helpful assistant.");
      ++single_turn;
    } else {
      EXPECT_EQ(system.rfind("Please act as an impartial judge", 0), 0u) << system;
      EXPECT_NE(user.find("### User:"), std::string::npos) << user;
    }
  }
  EXPECT_EQ(single_turn, 2);
}

TEST_F(Evaluate, AnnotateScoresEveryCandidateOnceWithOrWithoutItsImageAndCountsUnparseableReplies) {
  Server server(dir_ / "server");
  const std::string candidates = write("candidates.jsonl",
      R"({"id": "q1", "image": "a.png", "question": "What is on the table?", "candidates": ["A vase.", {"response": "A cat."}]})" "\n"
      R"({"id": "q2", "question": {"from": "human", "value": "Name a color."}, "candidates": [{"response": "Blue."}, ""]})" "\n");
  const std::string spec = write("exp.yaml", "name: annotate\nstages:\n"
      "  - {name: annotate, algorithm: annotate, candidates: " + candidates + ", request: per_candidate, "
      "max_retries: 0, max_tokens: 24, judge: "
      "{plugin: openai_compatible, base_url: '" + server.base_url() + "', model: llava}}\n");
  ASSERT_EQ(runner({spec}).status, 0);
  auto m = metrics();
  EXPECT_EQ(m["annotate"].at("candidates_in"), 3);
  EXPECT_EQ(m["annotate"].at("candidates_empty"), 1);  // q2's empty reply: not sent, left out
  EXPECT_EQ(m["annotate"].at("judge/sent"), 3);
  EXPECT_EQ(server.count(kChat, 200), 3);
  // The tiny random model does not follow the rubric: each unparseable reply is counted, its candidate left out
  // (one request per candidate and no retries here, so each candidate is one request).
  EXPECT_EQ(m["annotate"].at("candidates_scored") + m["annotate"].at("candidates_unparseable"), 3);
  EXPECT_EQ(m["annotate"].at("candidates_unparseable"), m["annotate"].at("judge/unparseable"));
  const auto rows = jsonl(artifacts().at("annotate/scored_candidates"));
  EXPECT_EQ(static_cast<double>(rows.size()), m["annotate"].at("rows_written"));

  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(server.count(kChat), 3);
  EXPECT_EQ(metrics()["annotate"].at("judge/cache_hits"), 3);

  // With show_image, the row's image travels with its prompts (a data: URL over HTTP): new requests for q1's two
  // candidates, whose cached replies are what the model says when it sees that image.
  const std::string with_image = write("exp_image.yaml", "name: annotate_image\nstages:\n"
      "  - {name: annotate, algorithm: annotate, candidates: " + candidates + ", request: per_candidate, "
      "max_retries: 0, max_tokens: 24, show_image: true, "
      "image_folder: " + (dir_ / "images").string() + ", judge: {plugin: openai_compatible, base_url: '" +
      server.base_url() + "', model: llava}}\n");
  ASSERT_EQ(runner({with_image}).status, 0);
  EXPECT_EQ(server.count(kChat, 200), 5);
  const ProcessResult q = runner({"query", "SELECT prompt, reply FROM judgments WHERE prompt LIKE '%\"images\"%'",
                                  "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  const json rows_with_image = json::parse(q.out);
  ASSERT_EQ(rows_with_image.size(), 2u);
  DirectModel direct;
  mmr::GenerationConfig config;
  config.max_new_tokens = 24;
  for (const auto& row : rows_with_image) {
    const json key = json::parse(row["prompt"].get<std::string>());
    ASSERT_EQ(key["images"].size(), 1u);
    EXPECT_EQ(key["images"][0], (dir_ / "images" / "a.png").string());
    const mmr::Generation expected = direct.generate(
        mmr::ChatSample{{{"human", "<image>\n" + key["user"].get<std::string>()}}, {key["images"][0]}}, config);
    EXPECT_EQ(row["reply"], expected.text);
  }

  // A row whose image is missing is an error naming the file and line, before anything is sent.
  const std::string missing = write("missing.jsonl",
      R"({"id": "q9", "image": "nope.png", "question": "Q?", "candidates": ["A."]})" "\n");
  const std::string bad = write("exp_bad.yaml", "name: annotate_bad\nstages:\n"
      "  - {name: annotate, algorithm: annotate, candidates: " + missing + ", show_image: true, image_folder: " +
      (dir_ / "images").string() + ", judge: {plugin: openai_compatible, base_url: '" + server.base_url() +
      "', model: llava}}\n");
  EXPECT_EQ(runner({bad}).status, 1);
  const ProcessResult error = runner({"query", "SELECT error FROM trials WHERE error != ''", "--format", "json"});
  EXPECT_NE(error.out.find(missing + ":1: image '"), std::string::npos) << error.out;
  EXPECT_EQ(server.count(kChat, 200), 5);
}

// `runner plan` lists the files it reads that do not exist after every other check passed: here, only the
// checkpoint, images and benchmark files that live outside the repository (/models, /data, ../shared).
TEST_F(Evaluate, TheExampleEvaluationExperimentNamesOnlyExistingPluginsAndOptions) {
  const fs::path repo = fs::weakly_canonical(fs::path(MMR_TEST_DATA_DIR) / ".." / "..");
  const ProcessResult r = runner({"plan", (repo / "experiments" / "evaluate.yaml").string()});
  ASSERT_EQ(r.status, 2) << r.err;
  ASSERT_NE(r.err.find("the experiment reads do not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("option 'path': /models/llava-v1.5-7b-hf"), std::string::npos) << r.err;
  std::istringstream lines(r.err.substr(r.err.find('\n') + 1));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  ", 0) != 0) continue;
    const std::string path = fs::weakly_canonical(line.substr(line.rfind(": ") + 2)).string();
    EXPECT_NE(path.rfind(repo.string() + "/", 0), 0u) << "a missing file inside the repository: " << line;
  }
}
