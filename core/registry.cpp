// Plugin discovery, ABI checks, option checking and creation. See registry.h for the rules.
#include "core/registry.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

#include "core/spec.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

std::shared_ptr<spdlog::logger> logger() {
  auto log = spdlog::get("plugins");
  return log ? log : spdlog::default_logger();
}

bool is_plugin_file(const fs::path& p) {
  const std::string name = p.filename().string();
  return name.rfind("lib", 0) == 0 && p.extension() == ".so";
}

std::string describe(const YAML::Node& node) {
  if (!node || node.IsNull()) return "nothing";
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  return "a map";
}

// A plugin node: a plugin name, or a map with `plugin: NAME` and its options (StageContext::create).
bool is_plugin_node(const YAML::Node& v) {
  return v.IsScalar() || (v.IsMap() && v["plugin"] && v["plugin"].IsScalar());
}

// Does a YAML value fit an option type? Scalars are checked by conversion, so "1e-4" is a float and "3" an int.
bool fits(const std::string& type, const YAML::Node& v) {
  if (type == "any") return true;
  // A dataset given as a scalar is a row file, read by the stage's default dataset plugin.
  if (type == "model" || type == "judge" || type == "dataset") return is_plugin_node(v);
  if (type == "paths" && v.IsSequence())
    return std::all_of(v.begin(), v.end(), [](const YAML::Node& x) { return x.IsScalar(); });
  if (type == "list") return v.IsSequence();
  if (type == "map") return v.IsMap();
  if (!v.IsScalar()) return false;
  try {
    if (type == "int") {
      v.as<long long>();
      return v.Scalar().find('.') == std::string::npos;
    }
    if (type == "float") return (v.as<double>(), true);
    if (type == "bool") return (v.as<bool>(), true);
    if (type == "string" || type == "path" || type == "paths" || type == "output") return true;
  } catch (const YAML::Exception&) {
    return false;
  }
  return false;
}

std::string expected_text(const std::string& type) {
  if (type == "int") return "an integer";
  if (type == "float") return "a number";
  if (type == "bool") return "true or false";
  if (type == "list") return "a list";
  if (type == "map") return "a map";
  if (type == "paths") return "a path or a list of paths";
  if (type == "model" || type == "judge") return fmt::format("a {} plugin name or a map {{plugin: NAME, ...}}", type);
  if (type == "dataset") return "a row file or a map {plugin: NAME, ...}";
  return "a " + type;
}

std::string where(const YAML::Node& node, const std::string& source) { return Options({node}, source).where(node); }

// Throws ConfigError at the first key of `options` that the schema does not declare, listing the known ones.
void reject_unknown_keys(const OptionSchema& schema, const YAML::Node& options, const std::string& source,
                         const std::string& owner) {
  if (!options || !options.IsMap()) return;
  std::set<std::string> known;
  for (const auto& spec : schema) known.insert(spec.name);
  for (const auto& kv : options) {
    const std::string key = kv.first.Scalar();
    if (known.count(key)) continue;
    std::vector<std::string> names(known.begin(), known.end());
    // Keys built in code carry no position; their values keep the one from the file.
    const YAML::Node& at = kv.first.Mark().line > 0 || kv.first.Mark().column > 0 ? kv.first : kv.second;
    throw ConfigError(fmt::format("{}{}: unknown option '{}'; known options: {}", where(at, source), owner, key,
                                  names.empty() ? "(none)" : fmt::format("{}", fmt::join(names, ", "))));
  }
}

// Loads a plugin library into `lib` and calls its entry point: the descriptor, or nullptr with `why` set.
const PluginDescriptor* open_plugin(const fs::path& file, boost::dll::shared_library& lib, std::string& why) {
  boost::dll::fs::error_code load_ec;
  // RTLD_LOCAL, not RTLD_DEEPBIND: a plugin carries weak copies of libstdc++ template code, and deep binding made
  // it use those instead of libstdc++'s own, which crashed iostreams on the GPU machines' toolchain. The one
  // library that needs deep binding, sentencepiece (DESIGN §5), is loaded deep-bound by core/tokenizer.
  lib.load(boost::dll::fs::path(file.string()), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local,
           load_ec);
  if (load_ec || !lib.is_loaded()) {
    const char* error = dlerror();
    why = "cannot load: " + (error ? std::string(error) : load_ec.message());
    return nullptr;
  }
  if (!lib.has(kPluginEntrySymbol)) {
    why = fmt::format("missing entry symbol '{}' (was it built with MMR_PLUGIN?)", kPluginEntrySymbol);
    return nullptr;
  }
  const PluginDescriptor* d = nullptr;
  try {
    auto entry = lib.get_alias<PluginEntry>(kPluginEntrySymbol);
    d = entry();
  } catch (const std::exception& e) {
    why = std::string("entry point failed: ") + e.what();
    return nullptr;
  }
  if (!d) why = "entry point returned no descriptor";
  return d;
}

// Why this runner cannot use a plugin with descriptor `d` (ABI number, build id, kind); empty when it can.
std::string incompatibility(const PluginDescriptor& d) {
  if (d.abi_version != kPluginAbiVersion)
    return fmt::format("ABI mismatch: plugin has ABI {}, this runner has ABI {}; rebuild the plugin", d.abi_version,
                       kPluginAbiVersion);
  const std::string build_id = d.build_id ? d.build_id : "";
  if (build_id != kBuildId)
    return fmt::format("build mismatch: plugin was built with '{}', this runner with '{}'; rebuild the plugin",
                       build_id, kBuildId);
  if (static_cast<uint32_t>(d.kind) > static_cast<uint32_t>(PluginKind::Judge))
    return fmt::format("unknown plugin kind {}", static_cast<uint32_t>(d.kind));
  return "";
}

}  // namespace

YAML::Node check_options(const OptionSchema& schema, const YAML::Node& options, const std::string& source,
                         const std::string& owner, bool require) {
  if (options && !options.IsNull() && !options.IsMap())
    throw ConfigError(fmt::format("{}{}: expected a map of options, found {}", where(options, source), owner,
                                  describe(options)));
  reject_unknown_keys(schema, options, source, owner);
  YAML::Node out = new_container(YAML::NodeType::Map);
  for (const auto& spec : schema) {
    YAML::Node value = options && options.IsMap() ? options[spec.name] : YAML::Node();
    if (value && !value.IsNull()) {
      if (!fits(spec.type, value))
        throw ConfigError(fmt::format("{}{}: option '{}': expected {}, found {}", where(value, source), owner,
                                      spec.name, expected_text(spec.type), describe(value)));
      out[spec.name] = value;
    } else if (spec.required && require) {
      throw ConfigError(fmt::format("{}{}: missing required option '{}' ({})",
                                    where(options ? options : YAML::Node(), source), owner, spec.name, spec.help));
    } else if (!spec.default_yaml.empty()) {
      out[spec.name] = YAML::Load(spec.default_yaml);
    }
  }
  return out;
}

namespace {

bool runtime_reference(const std::string& text) { return text.find("${") != std::string::npos; }

PluginKind node_kind(const std::string& type) {
  return type == "model" ? PluginKind::Model : type == "judge" ? PluginKind::Judge : PluginKind::Dataset;
}

// The plugin a plugin node names; an unknown name is a ConfigError at the node.
const PluginInfo& node_plugin(const Registry& registry, PluginKind kind, const YAML::Node& name,
                              const std::string& source, const std::string& owner, const std::string& option) {
  try {
    return registry.find(kind, name.Scalar());
  } catch (const PluginError& e) {
    throw ConfigError(fmt::format("{}{}: option '{}': {}", where(name, source), owner, option, e.what()));
  }
}

}  // namespace

void visit_paths(const Registry& registry, const OptionSchema& schema, const YAML::Node& checked,
                 const std::string& source, const std::string& owner, const PathVisitor& visit) {
  auto path = [&](YAML::Node v, const std::string& option, bool input) {
    if (!v.Scalar().empty() && !runtime_reference(v.Scalar())) visit(v, owner, option, input);
  };
  for (const auto& spec : schema) {
    const YAML::Node v = checked[spec.name];
    if (!v || v.IsNull()) continue;
    if (spec.type == "path" || (spec.type == "paths" && v.IsScalar()) || (spec.type == "dataset" && v.IsScalar())) {
      path(v, spec.name, true);
    } else if (spec.type == "output") {
      path(v, spec.name, false);
    } else if (spec.type == "paths") {
      for (auto p : v) path(p, spec.name, true);
    } else if (spec.type == "model" || spec.type == "judge" || spec.type == "dataset") {
      const PluginKind kind = node_kind(spec.type);
      const YAML::Node name = v.IsScalar() ? v : v["plugin"];
      if (runtime_reference(name.Scalar())) continue;
      const PluginInfo& info = node_plugin(registry, kind, name, source, owner, spec.name);
      YAML::Node options = new_container(YAML::NodeType::Map);
      if (v.IsMap())
        for (const auto& kv : v)
          if (kv.first.Scalar() != "plugin") options[kv.first] = kv.second;  // the same nodes: a visit can set them
      // Its required options are not required here: the plugin that creates the node may fill them in (a benchmark
      // gives an openai_compatible judge its official model).
      const std::string inner = fmt::format("{}, option '{}' ({} '{}')", owner, spec.name, kind_name(kind), info.name);
      visit_paths(registry, info.options, check_options(info.options, options, source, inner, false), source, inner,
                  visit);
    }
  }
}

std::string resolve_path(const std::string& path, const fs::path& base) {
  const fs::path p(path);
  return p.is_absolute() ? path : (base / p).lexically_normal().string();
}

void rethrow_from_plugin(const PluginInfo& info, std::exception_ptr error) {
  const std::string who = fmt::format("{} plugin '{}' ({})", kind_name(info.kind), info.name, info.path.string());
  try {
    std::rethrow_exception(error);
  } catch (const Interrupted&) {
    throw;
  } catch (const ConfigError& e) {
    throw ConfigError(fmt::format("{} [{}]", e.what(), who));
  } catch (const PluginError&) {
    throw;  // already names a plugin (a nested create)
  } catch (const std::exception& e) {
    throw PluginError(fmt::format("{} failed: {}", who, e.what()));
  } catch (...) {
    throw PluginError(fmt::format("{} failed with a non-standard exception", who));
  }
}

fs::path Registry::builtin_dir() {
  std::error_code ec;
  const fs::path exe = boost::dll::program_location().string();
  const fs::path build = fs::weakly_canonical(exe.parent_path() / ".." / "plugins", ec);
  if (fs::is_directory(build, ec)) return build;
  return fs::weakly_canonical(exe.parent_path() / ".." / "lib" / "mmrunner" / "plugins", ec);  // cmake --install
}

void Registry::scan_default(const std::vector<fs::path>& extra_dirs) {
  for (const auto& dir : extra_dirs) scan(dir);
  if (const char* env = std::getenv("RUNNER_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string entry;
    while (std::getline(ss, entry, ':')) {
      if (entry.empty()) continue;  // "a::b" would mean the current directory to a shell; not to us
      scan(entry);
    }
  }
  scan(builtin_dir());
}

void Registry::scan(const fs::path& dir_in) {
  std::error_code ec;
  const fs::path dir = fs::absolute(dir_in, ec);
  if (!fs::is_directory(dir, ec)) {
    failures_.push_back({dir, "plugin folder does not exist or is not a folder"});
    return;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && is_plugin_file(entry.path())) files.push_back(entry.path());
    if (entry.is_directory()) {
      for (const auto& sub : fs::directory_iterator(entry.path(), ec))
        if (sub.is_regular_file() && is_plugin_file(sub.path())) files.push_back(sub.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) load(f);
}

void Registry::load(const fs::path& file_in) {
  std::error_code ec;
  const fs::path file = fs::weakly_canonical(fs::absolute(file_in), ec);
  if (seen_.count(file)) return;
  seen_[file] = true;
  auto fail = [&](std::string reason) {
    logger()->debug("plugin {} not loaded: {}", file.string(), reason);
    failures_.push_back({file, std::move(reason)});
  };

  auto lib = std::make_shared<boost::dll::shared_library>();
  std::string why;
  const PluginDescriptor* d = open_plugin(file, *lib, why);
  if (!d) return fail(why);
  if (std::string bad = incompatibility(*d); !bad.empty()) return fail(bad);

  auto info = std::make_unique<PluginInfo>();
  info->kind = d->kind;
  info->name = d->name ? d->name : "";
  info->version = d->version ? d->version : "";
  info->summary = d->summary ? d->summary : "";
  info->path = file;
  info->descriptor = d;
  info->library = lib;
  try {
    info->options = d->options ? d->options() : OptionSchema{};
  } catch (const std::exception& e) {
    return fail(std::string("option schema failed: ") + e.what());
  }
  if (info->name.empty()) return fail("plugin has an empty name");
  if (const PluginInfo* existing = find_if(info->kind, info->name)) {
    logger()->warn("{} plugin '{}' in {} is shadowed by {}", kind_name(info->kind), info->name, file.string(),
                   existing->path.string());
    failures_.push_back({file, fmt::format("shadowed by {} (same kind and name)", existing->path.string())});
    return;
  }
  logger()->debug("loaded {} plugin '{}' {} from {}", kind_name(info->kind), info->name, info->version,
                  file.string());
  plugins_.push_back(std::move(info));
}

std::vector<const PluginInfo*> Registry::list() const {
  std::vector<const PluginInfo*> out;
  for (const auto& p : plugins_) out.push_back(p.get());
  std::sort(out.begin(), out.end(), [](const PluginInfo* a, const PluginInfo* b) {
    return std::tie(a->kind, a->name) < std::tie(b->kind, b->name);
  });
  return out;
}

std::vector<const PluginInfo*> Registry::list(PluginKind kind) const {
  std::vector<const PluginInfo*> out;
  for (const PluginInfo* p : list())
    if (p->kind == kind) out.push_back(p);
  return out;
}

std::vector<std::string> Registry::names(PluginKind kind) const {
  std::vector<std::string> out;
  for (const PluginInfo* p : list(kind)) out.push_back(p->name);
  return out;
}

const PluginInfo* Registry::find_if(PluginKind kind, const std::string& name) const {
  for (const auto& p : plugins_)
    if (p->kind == kind && p->name == name) return p.get();
  return nullptr;
}

const PluginInfo& Registry::find(PluginKind kind, const std::string& name) const {
  if (const PluginInfo* p = find_if(kind, name)) return *p;
  const auto loaded = names(kind);
  std::string msg = fmt::format("unknown {} '{}'; loaded {}s: {}", kind_name(kind), name, kind_name(kind),
                                loaded.empty() ? "(none)" : fmt::format("{}", fmt::join(loaded, ", ")));
  std::vector<std::string> broken;
  for (const auto& f : failures_)
    if (f.reason.rfind("shadowed", 0) != 0) broken.push_back(f.path.string() + ": " + f.reason);
  if (!broken.empty())
    msg += fmt::format("\n  {} plugin librar{} could not be used:\n    {}", broken.size(),
                       broken.size() == 1 ? "y" : "ies", fmt::join(broken, "\n    "));
  throw PluginError(msg);
}

std::shared_ptr<Plugin> Registry::create(PluginKind kind, const std::string& name, const YAML::Node& options,
                                         const std::string& source) const {
  const PluginInfo& info = find(kind, name);
  const std::string owner = fmt::format("{} '{}'", kind_name(kind), name);
  return create(info, Options(check_options(info.options, options, source, owner), source));
}

std::shared_ptr<Plugin> Registry::create(const PluginInfo& info, const Options& checked) const {
  std::unique_ptr<Plugin> made = call_plugin(info, [&] { return info.descriptor->create(checked); });
  if (!made) throw PluginError(fmt::format("{} plugin '{}' ({}) returned no object", kind_name(info.kind), info.name,
                                           info.path.string()));
  // The deleter holds the library: the plugin's destructor code stays mapped until the object is gone.
  auto lib = info.library;
  return std::shared_ptr<Plugin>(made.release(), [lib](Plugin* p) { delete p; });
}

}  // namespace mmr
