// The `reference_match` judge: grades the response in a judge prompt against the reference answer carried in the
// same prompt, with the deterministic rule of reference_match.h. No options, no model, no network: the same
// request always gets the same reply, so the judgment cache and a rerun agree.
#include <fmt/format.h>

#include "core/api/plugin_api.h"
#include "plugins/judges/reference_match/reference_match.h"

namespace mmr::reference_match {
namespace {

class ReferenceMatch : public Judge {
 public:
  explicit ReferenceMatch(const Options&) {}
  static const char* summary() {
    return "grades a response against the reference answer in the prompt (F1 of the answer-bearing tokens, "
           "the reference's words not in the question; MT-Bench, MM-Vet, annotate with reference); a deterministic "
           "stand-in for GPT-4 where the ground truth is known";
  }
  static OptionSchema option_schema() { return {}; }

  std::string identity() const override { return fmt::format("reference_match {} rule={}", kVersion, kRule); }

  std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) override {
    std::vector<JudgeReply> replies;
    replies.reserve(requests.size());
    for (const JudgeRequest& r : requests) replies.push_back(grade(r));
    return replies;
  }
};

}  // namespace
}  // namespace mmr::reference_match

MMR_PLUGIN(Judge, "reference_match", mmr::reference_match::kVersion, mmr::reference_match::ReferenceMatch)
