// Every parser of a judge's reply text, on the same bytes: MT-Bench's rating ("[[8]]"), MM-Vet's grader score,
// LLaVA-Bench's score pair, AlpacaEval's ranking (a Python literal), MMBench's answer extraction (both rule
// versions, four options), POPE's yes/no, and the annotate stage's HelpSteer scores (one response, and 1-4
// candidates). None of them throws: an unreadable reply is a value (nullopt, -1, [-1, -1]), so any exception is a
// finding.
#include "fuzz/fuzz.h"
#include "plugins/algorithms/annotate/annotate.h"
#include "plugins/benchmarks/alpaca_eval/scoring.h"
#include "plugins/benchmarks/llava_bench/scoring.h"
#include "plugins/benchmarks/mm_vet/scoring.h"
#include "plugins/benchmarks/mmbench/scoring.h"
#include "plugins/benchmarks/mt_bench/scoring.h"
#include "plugins/benchmarks/pope/scoring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string reply = mmr::fuzz::text(data, size);
  (void)mmr::mt_bench::parse_rating(reply);
  (void)mmr::mm_vet::parse_grader_reply(reply);
  (void)mmr::llava_bench::parse_score(reply);
  (void)mmr::alpaca_eval::parse_ranking(reply);
  const mmr::mmbench::OptionList options = {{'A', "a cat"}, {'B', "a dog"}, {'C', "two red cars"}, {'D', "none"}};
  (void)mmr::mmbench::can_infer(reply, options, mmr::mmbench::RuleVersion::k2023_11);
  (void)mmr::mmbench::can_infer(reply, options, mmr::mmbench::RuleVersion::k2024_01);
  (void)mmr::pope::parse_yes_no(reply);
  (void)mmr::annotate::parse_scores(reply);
  for (size_t n = 1; n <= 4; ++n) (void)mmr::annotate::parse_all_candidates_scores(reply, n);
  return 0;
}
