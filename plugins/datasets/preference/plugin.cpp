// Dataset "preference": DPO pairs in the seed's form ({image, question, chosen, rejected}, each a {from, value}
// turn, its Python-literal string, or a whole conversation; optional ref_*_logp fields) or TRL/LLaMA-Factory's
// ({prompt, chosen, rejected, images}). Provides preference rows; see plugins/datasets/README.md.
#include "core/lib/data/pipeline.h"

namespace {

class Preference : public mmr::data::FileDataset {
 public:
  explicit Preference(const mmr::Options& o)
      : FileDataset(o, mmr::RowKind::Preference, &mmr::data::parse_into_preferences) {}
  static const char* summary() {
    return "preference pairs (the seed's DPO rows or TRL prompt/chosen/rejected), validated, scaled and noised";
  }
  static mmr::OptionSchema option_schema() { return mmr::data::common_option_schema(); }
};

}  // namespace

MMR_PLUGIN(Dataset, "preference", "1.0.0", Preference)
