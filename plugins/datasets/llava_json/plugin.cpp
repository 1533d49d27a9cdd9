// Dataset "llava_json": LLaVA instruction rows ({id, image, conversations: [{from, value}]}) from a JSON array or
// JSONL file, streamed row by row. Provides conversation rows (SFT); see plugins/datasets/README.md.
#include "core/lib/data/pipeline.h"

namespace {

class LlavaJson : public mmr::data::FileDataset {
 public:
  explicit LlavaJson(const mmr::Options& o)
      : FileDataset(o, mmr::RowKind::Conversation, &mmr::data::parse_into_conversations) {}
  static const char* summary() { return "LLaVA conversation rows (JSON array or JSONL, streamed), validated and transformed"; }
  static mmr::OptionSchema option_schema() { return mmr::data::common_option_schema(); }
};

}  // namespace

MMR_PLUGIN(Dataset, "llava_json", "1.0.0", LlavaJson)
