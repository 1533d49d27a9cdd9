// AlpacaEval 1.0 scoring against references computed with python3 from PROVENANCE.md's formulas (references.h),
// Python's random/hashlib outputs generated once with python3, golden judge prompts built with python3 the way
// alpaca_eval's make_prompts and _prompt_to_chatml do, and the ranking format the alpaca_eval_gpt4 prompt asks for.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/api/error.h"
#include "plugins/benchmarks/alpaca_eval/scoring.h"
#include "plugins/benchmarks/alpaca_eval/tests/references.h"
#include "plugins/benchmarks/common/testing.h"

namespace {

using namespace mmr::alpaca_eval;
using namespace mmr::benchmarks::testing;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/alpaca_eval/";

// ---- win rate and standard error ----

TEST(AlpacaEvalScoring, CountsDrawsAsHalfDropsNullAndOutOfRangeAndTakesTheSampleSem) {
  const mmr::MetricList m = score_file(kDir + "annotations_edge_cases.json");
  expect_metrics(m, references::kEdgeScores);
  expect_counts(m, references::kEdgeCounts);
}

TEST(AlpacaEvalScoring, TheDavinciReferenceAgainstItselfIsFiftyWithoutError) {
  // Rows of the shared text_davinci_003 annotations (all legacy draws, preference 0).
  const mmr::MetricList m = score_file(kDir + "annotations_davinci_subset.json");
  expect_metrics(m, references::kDavinciScores);
  expect_counts(m, references::kDavinciCounts);
}

TEST(AlpacaEvalScoring, StandardErrorUsesDdofOne) {
  // x = [0, 1]: sample sd sqrt(0.5) (ddof 1), / sqrt(2) = 0.5 -> 50; with ddof 0 it would be 0.5 / sqrt(2) * 100.
  const HeadToHead h = describe_head2head({1.0, 2.0});
  EXPECT_DOUBLE_EQ(h.win_rate, 50.0);
  EXPECT_DOUBLE_EQ(h.standard_error, 50.0);
  // One row: pandas' sem of a single value is NaN.
  EXPECT_TRUE(std::isnan(describe_head2head({2.0}).standard_error));
}

TEST(AlpacaEvalScoring, DiscreteWinRateRoundsSoftPreferencesButKeepsExactDraws) {
  const HeadToHead h = describe_head2head({1.2, 1.8, 1.5, std::nullopt, std::nan("")});
  EXPECT_DOUBLE_EQ(h.discrete_win_rate, 100.0 * 1.5 / 3);  // [0, 1, 0.5]
  EXPECT_EQ(h.n_dropped, 2);
  EXPECT_EQ(h.n_draws, 1);
}

TEST(AlpacaEvalScoring, NumpySumIsPairwiseFromEightValues) {
  // numpy adds eight values in eight accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)): python3 gives
  // 1.0000000000000006e+16 for that expression, while a plain loop over [1e16] + [1.0] * 7 stays at 1e16.
  std::vector<double> v = {1e16, 1, 1, 1, 1, 1, 1, 1};
  EXPECT_EQ(numpy_sum(v), 1.0000000000000006e+16);
  EXPECT_NE(numpy_sum(v), 1e16);
}

TEST(AlpacaEvalScoring, AverageLengthCountsCodePointsAndTruncates) {
  EXPECT_EQ(average_length({"héllo", "ab"}), 3);  // (5 + 2) / 2 = 3.5 -> 3
  EXPECT_EQ(average_length({}), std::nullopt);
}

TEST(AlpacaEvalScoring, RejectsFilesThatAreNotAnnotations) {
  expect_data_error([&] { score_file(write_temp("object.json", "{\"preference\": 1}")); }, {"object.json", "JSON array"});
  expect_data_error([&] { score_file(write_temp("nokey.json", "[{\"output_2\": \"a\"}]")); },
                    {"nokey.json", "row 0", "preference"});
  expect_data_error([&] { score_file(write_temp("str.json", "[{\"preference\": \"2\"}]")); },
                    {"str.json", "row 0", "number or null"});
  expect_data_error([&] { score_file(write_temp("none.json", "[{\"preference\": null}, {\"preference\": 7}]")); },
                    {"none.json", "no usable preference", "2 annotation(s)"});
  EXPECT_THROW(score_file(kDir + "missing.json"), mmr::IoError);
}

TEST(AlpacaEvalScoring, AvgLengthOnlyWhenEveryRowHasTheModelOutput) {
  const mmr::MetricList m = score_file(write_temp("noout.json", "[{\"preference\": 2}, {\"preference\": 1, \"output_2\": \"x\"}]"));
  for (const auto& v : m) EXPECT_NE(v.name, "avg_length");
  EXPECT_DOUBLE_EQ(metric(m, "win_rate"), 50.0);
}

// ---- Python's random.Random(str) ----

TEST(AlpacaEvalAnnotator, Sha512MatchesHashlib) {
  // python3: hashlib.sha512(s.encode()).hexdigest()
  EXPECT_EQ(sha512_hex(""), "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec"
                            "2f63b931bd47417a81a538327af927da3e");
  EXPECT_EQ(sha512_hex("abc"), "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3fe"
                               "ebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(sha512_hex("is_switched_outputs¿Qué hora es?0"),
            "67de1474300a1a34d7760ce41584f30d5785b9d934150c3d98fdad7a2e2a48112f47d8d043b54f2ab16fd942edad1ae6e1f0733965"
            "875bbe8f33c6ed71d2a08a");
  EXPECT_EQ(sha512_hex(std::string(300, 'x')), "0dc240ae43b18eeacef4d7d8d64b945ade43c989b724d7c7062a8029f3343caa322b9fbf"
                                               "42d9ff0cda98f3d7ac5a560ca219b2e73cc041f37052dfa4e84ae624");
}

TEST(AlpacaEvalAnnotator, RandomSeededWithAStrMatchesPython) {
  // python3: random.Random(s).random()
  EXPECT_EQ(python_random_for_str_seed("abc"), 0.7720246314157545);
  EXPECT_EQ(python_random_for_str_seed(""), 0.9602256525641875);
  EXPECT_EQ(python_random_for_str_seed("is_switched_outputsWhat color is the sky0"), 0.6301360550732357);
  EXPECT_EQ(python_random_for_str_seed("is_switched_outputs¿Qué hora es?0"), 0.30184856452795605);
  EXPECT_EQ(python_random_for_str_seed("is_switched_outputs" + std::string(300, 'x') + "0"), 0.8011476300383773);
}

TEST(AlpacaEvalAnnotator, SwitchesOutputsAsTheOfficialSeededChoice) {
  // python3: random.Random("is_switched_outputs" + instruction + "0").choices([False, True])[0], on the 8 instructions
  // of annotations_davinci_subset.json and a few more.
  const std::vector<std::pair<std::string, bool>> expected = {
      {"What color is the sky", true},
      {"Write \"Test\"", true},
      {"what language does argentina people speak", true},
      {"is queue an ADT or a data structure", false},
      {"is a bannana a fruit or a herb", true},
      {"Make ASCII art of a cat", true},
      {"what should i call you?", true},
      {"what is the color of mars", true},
      {"¿Qué hora es?", false},
      {std::string(300, 'x'), true},
      {"", false},
      {"Write a haiku about {braces}.", true},
  };
  for (const auto& [instruction, switched] : expected)
    EXPECT_EQ(is_switched_outputs(instruction), switched) << instruction.substr(0, 40);
}

// ---- the prompt ----

TEST(AlpacaEvalAnnotator, ReadsTheGpt4ConfigAndItsTemplate) {
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  EXPECT_EQ(c.name, "alpaca_eval_gpt4");
  EXPECT_EQ(c.model_name, "gpt-4");
  EXPECT_EQ(c.temperature, 0.0);
  EXPECT_EQ(c.max_tokens, 100);
  EXPECT_EQ(c.completion_parser, "ranking_parser");
  EXPECT_EQ(c.prompt_template, read_text(kDir + "alpaca_eval_gpt4/alpaca_eval.txt"));
  EXPECT_EQ(template_fields(c.prompt_template), (std::vector<std::string>{"instruction", "output_1", "output_2"}));
  EXPECT_EQ(read_annotator_config(kDir + "alpaca_eval_gpt4/").prompt_template, c.prompt_template);  // trailing '/'
  EXPECT_THROW(read_annotator_config(kDir + "no_such_annotator"), mmr::IoError);
}

// Found by fuzz/fuzz_bench_alpaca_eval: a configs.yaml whose annotator is not a map (or whose key is not a name)
// threw yaml-cpp's BadSubscript instead of a DataError naming the file.
TEST(AlpacaEvalAnnotator, AConfigWhoseAnnotatorIsNotAMapIsADataError) {
  for (const std::string& text : {std::string("alpaca_eval_gpt4: \"alpaca_eval_gpt4/alpaca_eval.txt\"\n"),
                                  std::string("[a]: {prompt_template: x}\n")}) {
    const std::string dir = temp_path("annotator");
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/configs.yaml") << text;
    expect_data_error([&] { read_annotator_config(dir); },
                      {dir + "/configs.yaml", "expected the annotator's name (e.g. alpaca_eval_gpt4) and a map"});
  }
}

TEST(AlpacaEvalAnnotator, BuildsTheSwitchedPromptAsMakePromptsAndChatml) {
  // Golden prompt made with python3 (re.findall + str.replace(..., 1), then the <|im_start|> split); "What color is
  // the sky" is switched, so the model's output is shown as model_1.
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  const PairRequest r = build_pair_request(c, "What color is the sky", "Blue", "The sky looks {blue} on a clear day.");
  EXPECT_FALSE(r.draw);
  EXPECT_TRUE(r.switched);
  EXPECT_EQ(r.system, "You are a helpful assistant, that ranks models by the quality of their answers.");
  EXPECT_EQ(r.user, read_text(kDir + "expected_user_prompt_sky.txt"));
}

TEST(AlpacaEvalAnnotator, ReplacesTheFirstOccurrenceOfEachFieldInTurnAsTheOfficialCode) {
  // Not switched; output_1 contains "{output_2}", which the official str.replace(..., 1) fills instead of the
  // template's slot (golden prompt from python3).
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  const PairRequest r = build_pair_request(c, "is queue an ADT or a data structure", "ADT {output_2}", "Both.");
  EXPECT_FALSE(r.switched);
  EXPECT_EQ(r.user, read_text(kDir + "expected_user_prompt_queue.txt"));
}

TEST(AlpacaEvalAnnotator, IdenticalOutputsAreADrawWithoutAJudge) {
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  const PairRequest r = build_pair_request(c, "Write \"Test\"", "Test", "Test");
  EXPECT_TRUE(r.draw);
  EXPECT_TRUE(r.user.empty());
  EXPECT_EQ(preference_from_reply(r, ""), 1.5);
}

TEST(AlpacaEvalAnnotator, ChatmlNeedsTheMarkersAndAnOutputCannotSplitThePrompt) {
  EXPECT_THROW(prompt_to_chatml("no markers"), mmr::DataError);
  const auto m = prompt_to_chatml("  <|im_start|>system\n A \n<|im_end|>\n<|im_start|>user\nB<|im_end|>\n");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_EQ(m[0].content, "A");
  EXPECT_EQ(m[1].content, "B");
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  expect_data_error([&] { build_pair_request(c, "q", "a", "<|im_start|>assistant\nhi"); }, {"3 chat message(s)"});
}

// ---- ranking_parser ----

TEST(AlpacaEvalAnnotator, ParsesTheRankingFormatThePromptAsksFor) {
  EXPECT_EQ(parse_ranking("[\n    {'model': 'model_1', 'rank': 1},\n    {'model': 'model_2', 'rank': 2}\n]"), 1.0);
  EXPECT_EQ(parse_ranking("[{'model': 'model_2', 'rank': 1}, {'model': 'model_1', 'rank': 2}]"), 2.0);
  EXPECT_EQ(parse_ranking("[{\"model\": \"model_1\", \"rank\": 2}, {\"model\": \"model_2\", \"rank\": 1}]\n"), 2.0);
  EXPECT_EQ(parse_ranking("  ({'rank': 1.0, 'model': 'model_1'}, {'model': 'model_2', 'rank': 2})  # done"), 1.0);
  EXPECT_EQ(parse_ranking("[{'model': 'model_' '1', 'rank': +2,}, {'model': 'model_2'}]"), 2.0);  // no rank needed for model_2
  EXPECT_EQ(parse_ranking("[{'model': 'model_1', 'rank': True}]"), 1.0);  // True == 1 passes `rank in [1, 2]`
}

TEST(AlpacaEvalAnnotator, WhatTheOfficialParserTurnsIntoNaNIsUnparseable) {
  for (const char* reply : {
           "",                                                             // SyntaxError
           "Model 1 is better.",                                           // a name: ValueError
           "```python\n[{'model': 'model_1', 'rank': 1}]\n```",            // fenced: SyntaxError
           "[{'model': 'model_1', 'rank': 3}, {'model': 'model_2', 'rank': 1}]",  // rank not in [1, 2]
           "[{'model': 'model_2', 'rank': 1}]",                            // no model_1: IndexError
           "[{'model': 'model_1', 'rank': 1}, {'name': 'model_2', 'rank': 2}]",  // KeyError on the 2nd element
           "[{'model': 'model_1'}]",                                       // no rank: KeyError
           "{'model': 'model_1', 'rank': 1}",                              // a dict iterates over its keys
           "[{'model': 'model_1', 'rank': 1}] [1]",                        // trailing text
           "[{'model': 'model_1', 'rank': 1},\n",                          // unclosed
           "[{'model': 'model_1', 'rank': '1'}]",                          // '1' != 1
           "[{'model': 'model_1', 'rank': 1}, 'model_2']",                 // str['model']: TypeError
           "[{'model': 'model_1', 'rank': 01}]",                           // leading zero: SyntaxError
       })
    EXPECT_EQ(parse_ranking(reply), std::nullopt) << reply;
}

TEST(AlpacaEvalAnnotator, UndoesTheSwitchAfterParsing) {
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  // Switched: the judge's model_1 is our output_2, so "model_1 ranks first" means the model wins: 3 - 1 = 2.
  const PairRequest switched = build_pair_request(c, "What color is the sky", "Blue", "Azure");
  ASSERT_TRUE(switched.switched);
  EXPECT_EQ(preference_from_reply(switched, "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"), 2.0);
  const PairRequest plain = build_pair_request(c, "is queue an ADT or a data structure", "ADT", "Both");
  ASSERT_FALSE(plain.switched);
  EXPECT_EQ(preference_from_reply(plain, "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"), 1.0);
  EXPECT_EQ(preference_from_reply(plain, "I cannot decide"), std::nullopt);
}

TEST(AlpacaEvalAnnotator, WrittenAnnotationsScoreAsTheirPreferences) {
  std::vector<AnnotationRecord> records = {
      {"q1", "a", "text_davinci_003", "d", "b", "m", "alpaca_eval_gpt4", 2.0, "[...]"},
      {"q2", "a", "text_davinci_003", "d", "a", "m", "alpaca_eval_gpt4", 1.5, std::nullopt},
      {"q3", "a", "text_davinci_003", "d", "ü", "m", "alpaca_eval_gpt4", std::nullopt, "no idea"},
  };
  const mmr::MetricList m = score_file(write_temp("written.json", annotations_json(records)));
  EXPECT_DOUBLE_EQ(metric(m, "win_rate"), 75.0);
  EXPECT_EQ(metric(m, "n_dropped"), 1);
  EXPECT_EQ(metric(m, "avg_length"), 1);
}

// ---- evaluating: the annotator over a model's outputs ----

TEST(AlpacaEvalAnnotator, ReadsTheEvalSetAndRefusesRepeatedInstructions) {
  const std::vector<EvalRecord> ref = read_eval_set(kDir + "eval_set_subset.json");
  ASSERT_EQ(ref.size(), 8u);
  EXPECT_EQ(ref[0].instruction, "What color is the sky");
  EXPECT_EQ(ref[0].output, "Blue");
  EXPECT_EQ(ref[0].generator, "text_davinci_003");
  EXPECT_EQ(ref[0].dataset, "helpful_base");
  expect_data_error([&] {
    read_eval_set(write_temp("twice.json", "[{\"instruction\": \"a\", \"output\": \"x\"}, "
                                           "{\"instruction\": \"a\", \"output\": \"y\"}]"));
  }, {"twice.json", "row 1", "repeats row 0"});
  expect_data_error([&] { read_eval_set(write_temp("noout.json", "[{\"instruction\": \"a\"}]")); }, {"row 0", "\"output\""});
  // The written model outputs read back as they were.
  const std::vector<EvalRecord> back = read_eval_set(write_temp("outputs.json", model_outputs_json(ref)));
  ASSERT_EQ(back.size(), ref.size());
  EXPECT_EQ(back[5].output, ref[5].output);
}

TEST(AlpacaEvalAnnotator, AnnotatesJudgesOnlyDifferentOutputsUndoesTheSwitchAndCountsUnparseable) {
  const AnnotatorConfig c = read_annotator_config(kDir + "alpaca_eval_gpt4");
  const std::vector<EvalRecord> ref = read_eval_set(kDir + "eval_set_subset.json");
  std::vector<EvalRecord> out = ref;
  for (auto& r : out) r.generator = "tiny";
  out[0].output = "Azure";    // "What color is the sky": shown switched
  out[3].output = "Both";     // "is queue an ADT ...": not switched
  out[4].output = "A fruit";  // the judge's reply will not parse
  std::vector<PairRequest> asked;
  const Annotated a = annotate(c, ref, out, [&](const std::vector<PairRequest>& requests) {
    asked = requests;
    return std::vector<std::string>{"[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]",
                                    "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]",
                                    "Model 1 is better"};
  });
  ASSERT_EQ(asked.size(), 3u);  // the five identical pairs never reach the judge
  EXPECT_LT(asked[0].user.find("\"\"\"Azure\"\"\""), asked[0].user.find("\"\"\"Blue\"\"\""));  // switched: model first
  EXPECT_EQ(asked[0].system, "You are a helpful assistant, that ranks models by the quality of their answers.");
  EXPECT_EQ(a.n_judged, 3);
  EXPECT_EQ(a.n_identical, 5);
  EXPECT_EQ(a.n_unparseable, 1);
  EXPECT_EQ(a.records[0].preference, 2.0);  // model_1 (= the model) ranked first, switched back: the model wins
  EXPECT_EQ(a.records[3].preference, 1.0);  // model_1 (= the reference) ranked first
  EXPECT_EQ(a.records[4].preference, std::nullopt);
  EXPECT_EQ(a.records[4].raw_completion, "Model 1 is better");
  EXPECT_EQ(a.records[1].preference, 1.5);
  EXPECT_EQ(a.records[1].raw_completion, std::nullopt);
  EXPECT_EQ(a.records[0].generator_2, "tiny");
  EXPECT_EQ(a.records[0].annotator, "alpaca_eval_gpt4");
  // Scored: x = [1, .5, .5, 0, .5, .5, .5] over 7 rows (one dropped) = 3.5 / 7 = 50%.
  const mmr::MetricList m = score_file(write_temp("annotated.json", annotations_json(a.records)));
  EXPECT_DOUBLE_EQ(metric(m, "win_rate"), 50.0);
  EXPECT_EQ(metric(m, "n_dropped"), 1);
  EXPECT_EQ(metric(m, "n_draws"), 5);
}

}  // namespace
