// Test plugin with a wrong ABI number (hand-made descriptor; MMR_PLUGIN would always write the right one).
#include "core/api/plugin_api.h"

namespace {
const mmr::PluginDescriptor* descriptor() {
  static const mmr::PluginDescriptor d{999, mmr::kBuildId, mmr::PluginKind::Algorithm, "bad_abi", "1.0.0", "", nullptr,
                                       nullptr};
  return &d;
}
}  // namespace
BOOST_DLL_ALIAS(descriptor, mmr_plugin_entry)
