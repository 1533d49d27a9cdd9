// Test plugin built "with another compiler and LibTorch": it swaps in another build id before the API header.
#undef MMR_BUILD_ID
#define MMR_BUILD_ID "Clang-99.0/libtorch-0.1"
#include "core/api/plugin_api.h"

namespace {
class BadBuild : public mmr::Algorithm {
 public:
  explicit BadBuild(const mmr::Options&) {}
  static const char* summary() { return "built with another toolchain"; }
  static mmr::OptionSchema option_schema() { return {}; }
  void run(mmr::StageContext&) override {}
};
}  // namespace

MMR_PLUGIN(Algorithm, "bad_build", "1.0.0", BadBuild)
