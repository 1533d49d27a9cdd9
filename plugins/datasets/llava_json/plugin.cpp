// Dataset "llava_json": LLaVA instruction rows ({id, image, conversations: [{from, value}]}) from a JSON array or
// JSONL file, streamed row by row. Provides conversation rows (SFT); see plugins/datasets/README.md.
// Its options are FileDataset::Config's (core/lib/data/pipeline.h).
#include "core/lib/data/pipeline.h"

namespace {

class LlavaJson : public mmr::data::FileDataset {
 public:
  explicit LlavaJson(const mmr::Options& o)
      : FileDataset(mmr::read_options<Config>(o).pipeline, mmr::RowKind::Conversation) {}
  static const char* summary() { return "LLaVA conversation rows (JSON array or JSONL, streamed), validated and transformed"; }
};

}  // namespace

MMR_PLUGIN(Dataset, "llava_json", "1.0.0", LlavaJson)
