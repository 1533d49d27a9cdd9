// Dataset "scored_candidates": several responses per image-question, each scored on Helpfulness, Correctness,
// Coherence, Complexity and Verbosity (0-4). Provides scored-candidate rows (rejection sampling, SteerLM), or
// preference rows when the transforms include build_pairs (the paper's rule); see plugins/datasets/README.md.
#include "core/lib/data/pipeline.h"

namespace {

class ScoredCandidates : public mmr::data::FileDataset {
 public:
  explicit ScoredCandidates(const mmr::Options& o)
      : FileDataset(o, mmr::RowKind::ScoredCandidates, &mmr::data::parse_into_scored) {}
  static const char* summary() {
    return "scored candidate responses (five attributes, 0-4); build_pairs turns them into preference pairs";
  }
  static mmr::OptionSchema option_schema() {
    mmr::OptionSchema s = mmr::data::common_option_schema();
    // The question is a bare string here (no conversation), so "<image>\n" is prepended as LLaVA's data has it.
    for (auto& o : s)
      if (o.name == "image_token") o.default_yaml = "add";
    s.push_back({"required_attributes", "list", "[Helpfulness, Correctness, Coherence, Complexity, Verbosity]",
                 "attributes every candidate must score (0-4)"});
    return s;
  }
};

}  // namespace

MMR_PLUGIN(Dataset, "scored_candidates", "1.0.0", ScoredCandidates)
