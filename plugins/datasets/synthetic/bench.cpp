#include "plugins/datasets/synthetic/bench.h"

#include <fmt/format.h>

#include <set>
#include <string>
#include <utility>

namespace mmr::synthetic {

std::vector<nlohmann::ordered_json> pope_question_rows(const PopeSplits& splits) {
  std::vector<nlohmann::ordered_json> rows;
  const std::pair<const char*, const std::vector<PopeProbe>*> in_llava_order[] = {
      {"adversarial", &splits.adversarial}, {"random", &splits.random}, {"popular", &splits.popular}};
  int64_t block = 0;
  for (const auto& [split, probes] : in_llava_order) {
    for (const PopeProbe& p : *probes) {
      nlohmann::ordered_json row;
      row["question_id"] = block * kPopeQuestionIdBlock + p.question_id;
      row["image"] = p.image;
      row["text"] = p.text + kPopeQuestionSuffix;
      row["category"] = split;
      rows.push_back(std::move(row));
    }
    ++block;
  }
  return rows;
}

MmVetBench mm_vet_bench(const std::vector<nlohmann::ordered_json>& vqa_eval_rows) {
  MmVetBench out;
  out.metadata = nlohmann::ordered_json::object();
  int64_t n = 0;
  for (const auto& eval : vqa_eval_rows) {
    nlohmann::ordered_json question;
    question["question_id"] = n;
    question["image"] = eval.at("image");
    question["text"] = eval.at("text");
    question["category"] = eval.at("category");
    out.questions.push_back(std::move(question));
    nlohmann::ordered_json sample;
    sample["imagename"] = eval.at("image");
    sample["capability"] = nlohmann::ordered_json::array({eval.at("category")});
    sample["question"] = eval.at("text");
    sample["answer"] = eval.at("answer");
    out.metadata[fmt::format("v1_{}", n)] = std::move(sample);
    ++n;
  }
  return out;
}

const char* mt_bench_category(const std::string& text_task_type) {
  static const std::set<std::string> kMath = {"add", "subtract", "multiply", "word_problem"};
  return kMath.count(text_task_type) ? "math" : "reasoning";
}

MtBenchBench mt_bench_bench(const std::vector<nlohmann::ordered_json>& text_eval_rows) {
  MtBenchBench out;
  const size_t pairs = text_eval_rows.size() / 2;
  out.unpaired_tasks = static_cast<int64_t>(text_eval_rows.size() % 2);
  for (size_t k = 0; k < pairs; ++k) {
    const auto& first = text_eval_rows[2 * k];
    const auto& second = text_eval_rows[2 * k + 1];
    const int64_t id = static_cast<int64_t>(k) + 1;
    nlohmann::ordered_json question;
    question["question_id"] = id;
    question["category"] = mt_bench_category(first.at("category").get<std::string>());
    question["turns"] = nlohmann::ordered_json::array({first.at("text"), second.at("text")});
    out.questions.push_back(std::move(question));
    nlohmann::ordered_json reference;
    reference["question_id"] = id;
    reference["answer_id"] = fmt::format("{}+{}", first.at("question_id").get<std::string>(),
                                         second.at("question_id").get<std::string>());
    reference["model_id"] = "reference";
    nlohmann::ordered_json choice;
    choice["index"] = 0;
    choice["turns"] = nlohmann::ordered_json::array({first.at("answer"), second.at("answer")});
    reference["choices"] = nlohmann::ordered_json::array({std::move(choice)});
    out.references.push_back(std::move(reference));
  }
  return out;
}

}  // namespace mmr::synthetic
