// Dataset "scored_candidates": several responses per image-question, each scored on Helpfulness, Correctness,
// Coherence, Complexity and Verbosity (0-4). Provides scored-candidate rows (rejection sampling, SteerLM), or
// preference rows when the transforms include build_pairs (the paper's rule); see plugins/datasets/README.md.
#include "core/lib/data/pipeline.h"

namespace {

class ScoredCandidates : public mmr::data::FileDataset {
 public:
  struct Config {
    mmr::data::PipelineOptions pipeline;
    void bind(mmr::OptionBinder& o) {
      pipeline.bind_files(o);
      // The question is a bare string here (no conversation), so "<image>\n" is prepended as LLaVA's data has it.
      pipeline.bind_rows(o, "add");
      o.bind("required_attributes", &pipeline.parse.required_attributes, mmr::attribute_names(),
             "attributes every candidate must score (0-4)");
    }
  };

  explicit ScoredCandidates(const mmr::Options& o)
      : FileDataset(mmr::read_options<Config>(o).pipeline, mmr::RowKind::ScoredCandidates) {}
  static const char* summary() {
    return "scored candidate responses (five attributes, 0-4); build_pairs turns them into preference pairs";
  }
};

}  // namespace

MMR_PLUGIN(Dataset, "scored_candidates", "1.0.0", ScoredCandidates)
