// The reference_match judge's reading of a prompt (plugins/judges/reference_match/formats.cpp): the input is the
// user message, sent with each system message the formats know (MT-Bench single-math, its multi-turn form) and
// with none (MM-Vet's grader, the annotate rubric). A prompt in no format is a reply with ok = false, never an
// exception.
#include "fuzz/fuzz.h"
#include "plugins/judges/reference_match/reference_match.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace rm = mmr::reference_match;
  mmr::JudgeRequest request;
  request.user = mmr::fuzz::text(data, size);
  for (const char* system : {rm::kMtBenchSingleMathSystem, rm::kMtBenchMultiTurnMathSystem, ""}) {
    request.system = system;
    (void)rm::grade(request);
  }
  return 0;
}
