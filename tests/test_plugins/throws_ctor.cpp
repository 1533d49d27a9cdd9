// Test plugin (algorithm "throws_ctor"): its constructor throws, to check the host names the plugin and file.
#include "core/api/plugin_api.h"

namespace {
class ThrowsCtor : public mmr::Algorithm {
 public:
  explicit ThrowsCtor(const mmr::Options&) { throw std::runtime_error("cannot start: no GPU in this test"); }
  static const char* summary() { return "test plugin whose constructor throws"; }
  static mmr::OptionSchema option_schema() { return {}; }
  void run(mmr::StageContext&) override {}
};
}  // namespace

MMR_PLUGIN(Algorithm, "throws_ctor", "1.0.0", ThrowsCtor)
