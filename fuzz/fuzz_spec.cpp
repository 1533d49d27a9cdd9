// The experiment spec: YAML, -o overrides, ${...} interpolation, grid expansion and the run-time references
// (core/spec.h). Lines "# -o key=value" in the input (YAML comments, so the document is unchanged) are passed
// as -o overrides. Bad input is a ConfigError.
#include <sstream>

#include "core/spec.h"
#include "fuzz/fuzz.h"

namespace {

std::vector<std::string> overrides_in(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  const std::string marker = "# -o ";
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, marker.size(), marker) == 0) out.push_back(line.substr(marker.size()));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = mmr::fuzz::text(data, size);
  try {
    const mmr::Experiment exp = mmr::parse_experiment(text, "fuzz.yaml", overrides_in(text));
    // A stage's options as the runner resolves them before it runs the stage.
    const auto lookup = [](const std::string& ns, const std::string& key) -> std::string {
      if (ns == "artifact" && key.empty()) throw mmr::ConfigError("empty artifact name");
      return ns + ":" + key;
    };
    for (const auto& trial : exp.trials)
      for (const auto& stage : trial.stages) mmr::resolve_runtime(stage.options, lookup);
  } catch (const mmr::ConfigError&) {
  }
  return 0;
}
