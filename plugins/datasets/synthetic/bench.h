// The world's held-out evaluation sets written in the official benchmark formats, so that the real benchmark
// plugins (plugins/benchmarks/pope, mm_vet, mt_bench) evaluate a model trained on the world and score it
// against the world's ground truth. world.cpp writes these rows under bench/ (see world.h for the file list).
//
//   POPE      bench/pope/llava_pope_test.jsonl   LLaVA's question file: {question_id, image, text, category}, the
//                                                 text with LLaVA's suffix "\nAnswer the question using a single
//                                                 word or phrase."; splits in LLaVA's order and id blocks:
//                                                 adversarial 1.., random 10000001.., popular 20000001..
//             bench/pope/labels/coco_pope_<split>.json   the probes of pope_<split>.jsonl, the official label format
//                                                 (JSONL: question_id 1.. per split, image, text, label); the i-th
//                                                 question of a split is the i-th label line, as eval_pope.py pairs
//   MM-Vet    bench/mm_vet/llava-mm-vet.jsonl    {question_id n, image, text, category} from vqa_eval (n from 0);
//                                                 the mm_vet plugin names sample n "v1_<n>"
//             bench/mm_vet/mm-vet.json           {"v1_<n>": {imagename, capability: [question type], question,
//                                                 answer: the world's full answer sentence}}
//   MT-Bench  bench/mt_bench/question.jsonl      FastChat: {question_id k+1, category, turns: [task 2k, task 2k+1]}
//                                                 from text_eval; category "math" when turn 1 is add / subtract /
//                                                 multiply / word_problem, else "reasoning" (FastChat judges both
//                                                 with the reference answer); an odd last task is left out, counted
//             bench/mt_bench/reference_answer.jsonl   FastChat answer format: {question_id, answer_id (the two
//                                                 tasks' ids joined by '+'), model_id "reference", choices: [{index
//                                                 0, turns: [answer 2k, answer 2k+1]}]}
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/pope.h"

namespace mmr::synthetic {

// LLaVA's llava_pope_test.jsonl gives each split a block of ten million question ids.
inline constexpr int64_t kPopeQuestionIdBlock = 10'000'000;
inline const char* const kPopeQuestionSuffix = "\nAnswer the question using a single word or phrase.";

// The rows of bench/pope/llava_pope_test.jsonl: adversarial, random, popular, each in label order.
std::vector<nlohmann::ordered_json> pope_question_rows(const PopeSplits& splits);

struct MmVetBench {
  std::vector<nlohmann::ordered_json> questions;  // llava-mm-vet.jsonl rows
  nlohmann::ordered_json metadata;                // mm-vet.json
};
// From vqa_eval.jsonl's rows ({question_id, image, text, category, answer, short_answer}), in order.
MmVetBench mm_vet_bench(const std::vector<nlohmann::ordered_json>& vqa_eval_rows);

struct MtBenchBench {
  std::vector<nlohmann::ordered_json> questions;   // question.jsonl rows
  std::vector<nlohmann::ordered_json> references;  // reference_answer.jsonl rows
  int64_t unpaired_tasks = 0;                      // 1 when the number of text tasks is odd
};
// From text_eval.jsonl's rows ({question_id, text, category, answer, short_answer}), paired in order.
MtBenchBench mt_bench_bench(const std::vector<nlohmann::ordered_json>& text_eval_rows);

// The MT-Bench category of a text task type: "math" (add, subtract, multiply, word_problem) or "reasoning".
const char* mt_bench_category(const std::string& text_task_type);

}  // namespace mmr::synthetic
