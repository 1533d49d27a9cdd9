// The plugin registry: finds plugin libraries, checks them, and creates plugin objects.
//
// Search order (first match of a kind+name wins, later ones are reported as shadowed):
//   1. every --plugin-path given on the command line, in order;
//   2. every entry of RUNNER_PLUGIN_PATH (colon-separated; empty entries are ignored, never "the current dir");
//   3. the build's own plugin folder (beside the runner: <prefix>/plugins).
// A folder is scanned for lib*.so directly and one level down (<dir>/<kind>/lib*.so). Libraries are loaded
// with RTLD_NOW | RTLD_LOCAL. Deep binding, which DESIGN §5 asks for because sentencepiece's private protobuf
// must not meet libtorch's, is applied where that clash lives: core/tokenizer loads the sentencepiece module
// deep-bound. Deep-binding every plugin was tried and broke iostreams inside plugins on the GPU toolchain (a
// plugin's weak copies of libstdc++ template code won over libstdc++'s own). A library is used only if its ABI
// number and build id equal the host's; every library that fails is kept with the reason and shown by
// `runner plugins` and by the "unknown plugin" error.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"

namespace boost::dll {
class shared_library;
}

namespace mmr {

struct PluginInfo {
  PluginKind kind;
  std::string name;
  std::string version;
  std::string summary;
  OptionSchema options;
  std::filesystem::path path;
  const PluginDescriptor* descriptor = nullptr;
  std::shared_ptr<boost::dll::shared_library> library;  // shared with every object created from it
};

struct LoadFailure {
  std::filesystem::path path;
  std::string reason;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Scans one folder (absolute or made absolute); a missing folder is recorded as a failure, not fatal.
  void scan(const std::filesystem::path& dir);
  // Loads a single library file.
  void load(const std::filesystem::path& file);
  // Scans the standard places: the given extra folders, RUNNER_PLUGIN_PATH, then the build's plugin folder.
  void scan_default(const std::vector<std::filesystem::path>& extra_dirs);

  const std::vector<LoadFailure>& failures() const { return failures_; }
  std::vector<const PluginInfo*> list(PluginKind kind) const;
  std::vector<const PluginInfo*> list() const;
  std::vector<std::string> names(PluginKind kind) const;

  // Throws PluginError: "unknown algorithm 'dpoo'; loaded algorithms: dpo, sft" (+ load failures, if any).
  const PluginInfo& find(PluginKind kind, const std::string& name) const;
  const PluginInfo* find_if(PluginKind kind, const std::string& name) const;

  // Checks `options` against the plugin's schema (check_options, owner "<kind> '<name>'") and creates the
  // object. Exceptions from inside the plugin are rethrown as PluginError naming the plugin and its file,
  // except ConfigError, which keeps its file:line:column and gains the plugin's name.
  std::shared_ptr<Plugin> create(PluginKind kind, const std::string& name, const YAML::Node& options,
                                 const std::string& source) const;
  // The same from options the caller already checked against `info.options` with check_options: nothing is
  // checked a second time (the runner checks a stage's options once and hands the same Options to the stage).
  std::shared_ptr<Plugin> create(const PluginInfo& info, const Options& checked) const;

  // The folder of the build's own plugins: <dir of the running executable>/../plugins in a build tree, else
  // <dir>/../lib/mmrunner/plugins (where `cmake --install` and the .deb put them).
  static std::filesystem::path builtin_dir();

 private:
  std::vector<std::unique_ptr<PluginInfo>> plugins_;
  std::vector<LoadFailure> failures_;
  std::map<std::filesystem::path, bool> seen_;  // canonical paths already loaded or failed
};

// Checks a YAML map of options against a schema: returns the map with defaults filled in. Throws ConfigError
// (file:line:column) for an unknown key (listing the known ones), a missing required one (unless !require) or a
// wrong type.
YAML::Node check_options(const OptionSchema& schema, const YAML::Node& options, const std::string& source,
                         const std::string& owner, bool require = true);

// Calls `visit` with every value of options check_options returned that names a file or folder: path and paths
// options, a dataset option given as a row file, and the same inside the plugin nodes nested in them (options of
// type model, judge or dataset: a plugin name, or a map {plugin: NAME, ...}), which are checked against their
// plugins' schemas on the way, recursively. Text holding a reference (${artifact:...}, ${trial:...}) is left to run
// time. `visit` gets the node itself (setting it sets the option), its owner, its option's name, and whether it is
// read (false: an "output" option, a file or folder the plugin makes).
using PathVisitor =
    std::function<void(YAML::Node value, const std::string& owner, const std::string& option, bool input)>;
void visit_paths(const Registry& registry, const OptionSchema& schema, const YAML::Node& checked,
                 const std::string& source, const std::string& owner, const PathVisitor& visit);

// `path` read from `base` (the experiment file's folder) when relative.
std::string resolve_path(const std::string& path, const std::filesystem::path& base);

// Runs `fn` and turns any exception into one that names the plugin (kind, name, file).
template <typename Fn>
auto call_plugin(const PluginInfo& info, Fn&& fn) -> decltype(fn());

[[noreturn]] void rethrow_from_plugin(const PluginInfo& info, std::exception_ptr error);

template <typename Fn>
auto call_plugin(const PluginInfo& info, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    rethrow_from_plugin(info, std::current_exception());
  }
}

}  // namespace mmr
