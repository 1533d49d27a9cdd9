// Dataset "preference": DPO pairs in the seed's form ({image, question, chosen, rejected}, each a {from, value}
// turn, its Python-literal string, or a whole conversation; optional ref_*_logp fields) or TRL/LLaMA-Factory's
// ({prompt, chosen, rejected, images}). Provides preference rows; see plugins/datasets/README.md.
// Its options are FileDataset::Config's (core/lib/data/pipeline.h).
#include "core/lib/data/pipeline.h"

namespace {

class Preference : public mmr::data::FileDataset {
 public:
  explicit Preference(const mmr::Options& o)
      : FileDataset(mmr::read_options<Config>(o).pipeline, mmr::RowKind::Preference) {}
  static const char* summary() {
    return "preference pairs (the seed's DPO rows or TRL prompt/chosen/rejected), validated, scaled and noised";
  }
};

}  // namespace

MMR_PLUGIN(Dataset, "preference", "1.0.0", Preference)
