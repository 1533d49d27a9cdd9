// bench/: the held-out sets in the official POPE, MM-Vet and MT-Bench formats, checked against the world's own
// row files (pope_*.jsonl, vqa_eval.jsonl, text_eval.jsonl) and the layouts the benchmark plugins read.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"
#include "plugins/datasets/synthetic/bench.h"
#include "plugins/datasets/synthetic/world.h"
#include "png_probe.h"

namespace fs = std::filesystem;
using namespace mmr::synthetic;
using nlohmann::json;

namespace {

const std::string kSuffix = "\nAnswer the question using a single word or phrase.";

}  // namespace

TEST(SyntheticBench, PopeLabelFilesAreThePopeRowFiles) {
  const fs::path world = synth_test::small_world();
  for (const char* split : {"random", "popular", "adversarial"}) {
    EXPECT_EQ(mmr::read_file(world / "bench/pope/labels" / (std::string("coco_pope_") + split + ".json")),
              mmr::read_file(world / (std::string("pope_") + split + ".jsonl")))
        << split;
  }
}

TEST(SyntheticBench, PopeQuestionsFollowLlavasFileSplitBySplitInLabelOrder) {
  const fs::path world = synth_test::small_world();
  const auto questions = synth_test::read_jsonl(world / "bench/pope/llava_pope_test.jsonl");
  std::set<int64_t> ids;
  std::map<std::string, std::vector<json>> by_split;
  std::vector<std::string> split_order;
  for (const auto& q : questions) {
    EXPECT_EQ(q.size(), 4u) << q.dump();
    EXPECT_TRUE(ids.insert(q.at("question_id").get<int64_t>()).second) << "duplicate id " << q.dump();
    const std::string split = q.at("category");
    if (split_order.empty() || split_order.back() != split) split_order.push_back(split);
    by_split[split].push_back(q);
  }
  // LLaVA's llava_pope_test.jsonl: adversarial 1.., random 10000001.., popular 20000001.., one block each.
  EXPECT_EQ(split_order, (std::vector<std::string>{"adversarial", "random", "popular"}));
  const std::map<std::string, int64_t> first_id = {{"adversarial", 1}, {"random", 10000001}, {"popular", 20000001}};
  for (const auto& [split, rows] : by_split) {
    const auto labels = synth_test::read_jsonl(world / "bench/pope/labels" / ("coco_pope_" + split + ".json"));
    ASSERT_EQ(rows.size(), labels.size()) << split;
    ASSERT_FALSE(rows.empty()) << split;
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(rows[i].at("question_id").get<int64_t>(), first_id.at(split) + static_cast<int64_t>(i)) << split;
      EXPECT_EQ(rows[i].at("image"), labels[i].at("image")) << split << " #" << i;
      EXPECT_EQ(rows[i].at("text").get<std::string>(), labels[i].at("text").get<std::string>() + kSuffix)
          << split << " #" << i;
      EXPECT_TRUE(fs::exists(world / "images" / rows[i].at("image").get<std::string>()));
    }
  }
}

TEST(SyntheticBench, MmVetQuestionsAndMetadataComeFromVqaEval) {
  const fs::path world = synth_test::small_world();
  const auto eval = synth_test::read_jsonl(world / "vqa_eval.jsonl");
  const auto questions = synth_test::read_jsonl(world / "bench/mm_vet/llava-mm-vet.jsonl");
  const json metadata = synth_test::read_json(world / "bench/mm_vet/mm-vet.json");
  ASSERT_FALSE(eval.empty());
  ASSERT_EQ(questions.size(), eval.size());
  ASSERT_EQ(metadata.size(), eval.size());
  std::set<std::string> capabilities;
  for (size_t n = 0; n < eval.size(); ++n) {
    EXPECT_EQ(questions[n], (json{{"question_id", n}, {"image", eval[n].at("image")}, {"text", eval[n].at("text")},
                                  {"category", eval[n].at("category")}}));
    const json& sample = metadata.at("v1_" + std::to_string(n));
    EXPECT_EQ(sample, (json{{"imagename", eval[n].at("image")}, {"capability", json::array({eval[n].at("category")})},
                            {"question", eval[n].at("text")}, {"answer", eval[n].at("answer")}}));
    capabilities.insert(sample.at("capability")[0].get<std::string>());
  }
  EXPECT_EQ(capabilities, (std::set<std::string>{"count", "colour", "position", "existence"}));
  // mm-vet.json keeps the release's key order (v1_0, v1_1, ...), which the evaluator's sums follow.
  EXPECT_EQ(metadata.begin().key(), "v1_0");
}

TEST(SyntheticBench, MtBenchPairsConsecutiveTextTasksWithTheirAnswersAsReference) {
  const fs::path world = synth_test::small_world();
  const auto eval = synth_test::read_jsonl(world / "text_eval.jsonl");
  const auto questions = synth_test::read_jsonl(world / "bench/mt_bench/question.jsonl");
  const auto references = synth_test::read_jsonl(world / "bench/mt_bench/reference_answer.jsonl");
  ASSERT_EQ(eval.size(), 30u);
  ASSERT_EQ(questions.size(), 15u);
  ASSERT_EQ(references.size(), 15u);
  const std::set<std::string> math = {"add", "subtract", "multiply", "word_problem"};
  std::set<std::string> categories;
  for (size_t k = 0; k < questions.size(); ++k) {
    const json& a = eval[2 * k];
    const json& b = eval[2 * k + 1];
    const std::string category = math.count(a.at("category")) ? "math" : "reasoning";
    EXPECT_EQ(questions[k], (json{{"question_id", k + 1}, {"category", category},
                                  {"turns", json::array({a.at("text"), b.at("text")})}}));
    EXPECT_EQ(references[k],
              (json{{"question_id", k + 1},
                    {"answer_id", a.at("question_id").get<std::string>() + "+" +
                                      b.at("question_id").get<std::string>()},
                    {"model_id", "reference"},
                    {"choices", json::array({json{{"index", 0},
                                                  {"turns", json::array({a.at("answer"), b.at("answer")})}}})}}));
    categories.insert(category);
  }
  EXPECT_EQ(categories, (std::set<std::string>{"math", "reasoning"}));
}

TEST(SyntheticBench, AnOddLastTextTaskIsLeftOutAndCounted) {
  std::vector<nlohmann::ordered_json> rows;
  for (int i = 0; i < 3; ++i)
    rows.push_back({{"question_id", "t" + std::to_string(i)}, {"text", "q" + std::to_string(i)},
                    {"category", i == 0 ? "reverse" : "add"}, {"answer", "a" + std::to_string(i)}});
  const MtBenchBench bench = mt_bench_bench(rows);
  ASSERT_EQ(bench.questions.size(), 1u);
  EXPECT_EQ(bench.unpaired_tasks, 1);
  EXPECT_EQ(bench.questions[0].at("category"), "reasoning");  // the first turn's task decides
  EXPECT_EQ(bench.references[0].at("choices")[0].at("turns"), nlohmann::ordered_json::array({"a0", "a1"}));

  const fs::path dir = synth_test::fresh_temp_dir("odd_text_tasks");
  const WorldConfig c = WorldConfig::from_json({{"seed", 5}, {"image_size", 168}, {"num_train_images", 2},
                                                {"num_eval_images", 2}, {"num_text_tasks", 2},
                                                {"num_eval_text_tasks", 5}});
  const WorldStats stats = generate_world(c, dir);
  EXPECT_EQ(stats.bench_mt_bench, 2);
  EXPECT_EQ(stats.bench_text_tasks_unpaired, 1);
  EXPECT_EQ(synth_test::read_jsonl(dir / "bench/mt_bench/question.jsonl").size(), 2u);
}

TEST(SyntheticBench, ManifestCountsTheBenchQuestionsAndHasFormatVersion2) {
  const fs::path world = synth_test::small_world();
  const json manifest = synth_test::read_json(world / "manifest.json");
  EXPECT_EQ(manifest.at("format_version"), 2);
  EXPECT_EQ(manifest.at("format_version"), kWorldFormatVersion);
  const json& counts = manifest.at("counts");
  EXPECT_EQ(counts.at("bench_pope"),
            counts.at("pope_random").get<int64_t>() + counts.at("pope_popular").get<int64_t>() +
                counts.at("pope_adversarial").get<int64_t>());
  EXPECT_EQ(counts.at("bench_mm_vet"), counts.at("vqa_eval"));
  EXPECT_EQ(counts.at("bench_mt_bench"), 15);
  EXPECT_EQ(counts.at("bench_text_tasks_unpaired"), 0);
  for (const char* f : {"bench/pope/llava_pope_test.jsonl", "bench/pope/labels/coco_pope_random.json",
                        "bench/pope/labels/coco_pope_popular.json", "bench/pope/labels/coco_pope_adversarial.json",
                        "bench/mm_vet/llava-mm-vet.jsonl", "bench/mm_vet/mm-vet.json", "bench/mt_bench/question.jsonl",
                        "bench/mt_bench/reference_answer.jsonl"}) {
    EXPECT_TRUE(manifest.at("files").contains(f)) << f;
  }
}

TEST(SyntheticBench, TooManyPopeProbesForLlavasIdBlocksIsAConfigError) {
  try {
    WorldConfig::from_json({{"num_eval_images", 2000000}, {"pope_per_image", 3}});
    FAIL() << "no error";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("question-id block"), std::string::npos) << e.what();
  }
}
