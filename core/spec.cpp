// Experiment spec parsing, interpolation and grid expansion. See spec.h for the format.
//
// parse_experiment reads a file in this order, one function per step: the document (load_document); the
// overrides that name a section or a var, applied to the document (apply_to_document); the sections
// (read_sections: vars, defaults, seeds, stage templates); the axes (read_axes: grid, zip); the remaining
// overrides, which set a configuration value or a stage option (apply_direct_override); the points (cartesian,
// apply_excludes, include entries); the check of keys that name both a defaults key and a stage
// (check_ambiguous_keys); one trial per point and seed (expand_trials, make_trial).
//
// yaml-cpp nodes share their data on assignment, so this file never changes a node that came from the
// parsed document once copies exist: trial configurations and stage options are new containers whose
// untouched scalars are the document's own nodes (which keeps their line:column for error messages).
#include "core/spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "core/lib/util/json_safe.h"
#include "core/lib/util/sha256.h"
#include "core/lib/util/secrets.h"
#include "core/lib/util/strings.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// `report` is read by `runner report` only (tables and plots to draw); it takes no part in the trials.
const std::vector<std::string> kSections = {"name",  "description", "vars",    "defaults", "grid",      "zip",
                                            "seeds", "include",     "exclude", "stages",   "max_trials", "report"};
const std::vector<std::string> kStageKinds = {"algorithm", "benchmark", "dataset"};
constexpr uint64_t kDefaultSeed = 42;  // HF Trainer's default, which the paper's scripts kept
constexpr int kMaxDepth = 32;
// Expansion bombs: YAML aliases nested in aliases, or ${...} doubling at each level, make a small file expand to
// billions of values. A file may expand to this many values, make this many ${...} substitutions, and build texts
// of at most this size.
constexpr int64_t kMaxValues = 1'000'000;
constexpr int64_t kMaxSubstitutions = 1'000'000;
constexpr size_t kMaxText = 1 << 20;
// A grid larger than this is refused before its points are made: three 1,000-value lists by mistake would
// otherwise allocate a billion trials. `max_trials:` in the file (or -o max_trials=N) raises it.
constexpr int64_t kDefaultMaxTrials = 10000;

[[noreturn]] void fail(const YAML::Node& node, const std::string& source, const std::string& msg) {
  throw ConfigError(yaml_where(node, source) + msg);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::stringstream ss(s);
  while (std::getline(ss, part, sep)) out.push_back(part);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

std::string describe(const YAML::Node& node) {
  if (!node || node.IsNull()) return "nothing";
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  return node.IsSequence() ? "a list" : "a map";
}

std::string value_text(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  return canonical_json(node);
}

}  // namespace

YamlPool::YamlPool(YAML::Node anchor) : anchor_(std::move(anchor)), previous_(current()) { current() = this; }

YamlPool::~YamlPool() { current() = previous_; }

YamlPool*& YamlPool::current() {
  thread_local YamlPool* pool = nullptr;
  return pool;
}

YAML::Node new_container(YAML::NodeType::value type) {
  YAML::Node node(type);
  if (YamlPool* pool = YamlPool::current()) pool->adopt(node);
  return node;
}

namespace {

// New containers all the way down; scalars are shared (never modified in place).
YAML::Node deep_copy(const YAML::Node& node) {
  if (!node || node.IsNull() || node.IsScalar()) return node;
  if (node.IsMap()) {
    YAML::Node out = new_container(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = deep_copy(kv.second);
    return out;
  }
  YAML::Node out = new_container(YAML::NodeType::Sequence);
  for (const auto& child : node) out.push_back(deep_copy(child));
  return out;
}

YAML::Node get_path(const YAML::Node& root, const std::string& dotted) {
  YAML::Node cur = root;
  for (const auto& part : split(dotted, '.')) {
    if (!cur || part.empty()) return YAML::Node(YAML::NodeType::Undefined);
    if (cur.IsMap()) {
      YAML::Node next = static_cast<const YAML::Node&>(cur)[part];  // const: never inserts
      if (!next) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(next);
    } else if (cur.IsSequence() && part.find_first_not_of("0123456789") == std::string::npos) {
      if (part.size() > 9) return YAML::Node(YAML::NodeType::Undefined);  // past any list (and stoul's range)
      const size_t i = std::stoul(part);
      if (i >= cur.size()) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(static_cast<const YAML::Node&>(cur)[i]);
    } else {
      return YAML::Node(YAML::NodeType::Undefined);
    }
  }
  return cur;
}

// Sets root.a.b.c = value in a tree of our own containers. Errors start with `where` and name the tree
// `what`; `shown` is put before `dotted` in them (a stage option's path is shown with its stage's name).
void set_path(YAML::Node root, const std::string& dotted, const YAML::Node& value, const std::string& where,
              const std::string& what, const std::string& shown = "") {
  const auto parts = split(dotted, '.');
  for (const auto& p : parts)
    if (p.empty()) throw ConfigError(where + fmt::format("'{}{}': empty part in a dotted key", shown, dotted));
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[parts[i]]);
    } else if (!next.IsMap()) {
      throw ConfigError(where + fmt::format("'{}{}': '{}{}' is {} in {}, not a map", shown, dotted, shown,
                                            fmt::join(parts.begin(), parts.begin() + i + 1, "."), describe(next),
                                            what));
    }
    cur.reset(next);
  }
  cur[parts.back()] = value;
}

bool is_runtime_ref(const std::string& inner) {
  return inner.rfind("artifact:", 0) == 0 || inner.rfind("trial:", 0) == 0;
}

// Resolves ${...} against vars, the seed and a configuration tree.
class Resolver {
 public:
  Resolver(std::string source, YAML::Node vars, YAML::Node config, std::optional<uint64_t> seed)
      : source_(std::move(source)), vars_(std::move(vars)), config_(std::move(config)), seed_(seed) {}

  YAML::Node interpolate(const YAML::Node& node, int depth = 0) {
    if (depth > kMaxDepth) fail(node, source_, "reference cycle: a ${...} refers back to itself");
    if (!node || node.IsNull()) return node;
    if (node.IsScalar()) return scalar(node, depth);
    if (node.IsMap()) {
      YAML::Node out = new_container(YAML::NodeType::Map);
      for (const auto& kv : node) out[kv.first.Scalar()] = interpolate(kv.second, depth);
      return out;
    }
    YAML::Node out = new_container(YAML::NodeType::Sequence);
    for (const auto& child : node) out.push_back(interpolate(child, depth));
    return out;
  }

 private:
  YAML::Node scalar(const YAML::Node& node, int depth) {
    const std::string& s = node.Scalar();
    if (s.find('$') == std::string::npos) return node;
    std::string out;
    bool changed = false;
    for (size_t i = 0; i < s.size();) {
      if (s.compare(i, 3, "$${") == 0) {  // escape: "$${x}" is the text "${x}"
        out += "${";
        i += 3;
        changed = true;
        continue;
      }
      if (s.compare(i, 2, "${") != 0) {
        out += s[i++];
        continue;
      }
      const size_t end = s.find('}', i + 2);
      if (end == std::string::npos) fail(node, source_, fmt::format("unterminated '${{' in '{}'", s));
      const std::string inner = s.substr(i + 2, end - i - 2);
      if (inner.empty()) fail(node, source_, fmt::format("empty reference '${{}}' in '{}'", s));
      if (is_runtime_ref(inner)) {
        out += s.substr(i, end - i + 1);  // resolved when the stage runs
      } else {
        YAML::Node value = resolve(inner, node, depth);
        if (i == 0 && end + 1 == s.size()) return value;  // the whole value: keep its type
        if (!value.IsScalar())
          fail(node, source_, fmt::format("'${{{}}}' is {} and cannot be part of the text '{}'", inner,
                                          describe(value), s));
        out += value.Scalar();
        changed = true;
        if (out.size() > kMaxText)
          fail(node, source_, fmt::format("'{}' expands to a text of more than {} bytes: do the vars refer to each "
                                          "other exponentially?", s.substr(0, 80), kMaxText));
      }
      i = end + 1;
    }
    return changed ? YAML::Node(out) : node;
  }

  YAML::Node resolve(const std::string& inner, const YAML::Node& at, int depth) {
    if (++substitutions_ > kMaxSubstitutions)
      fail(at, source_, fmt::format("more than {} ${{...}} substitutions: do the vars refer to each other "
                                    "exponentially (each one to the next, twice)?", kMaxSubstitutions));
    if (inner.rfind("env:", 0) == 0) {
      // Only the reference is kept: the value is read when the stage runs (resolve_env), so a secret never
      // reaches the trial's configuration, its identity, plan's output or the store.
      check_env_reference(inner.substr(4), at);
      return YAML::Node("${" + inner + "}");
    }
    if (inner == "cwd") return YAML::Node(fs::current_path().string());  // relative paths are the file's folder's
    if (YAML::Node v = get_path(vars_, inner); v) return interpolate(v, depth + 1);
    if (inner == "seed" && seed_) return YAML::Node(*seed_);
    if (YAML::Node v = get_path(config_, inner); v) return interpolate(v, depth + 1);
    std::vector<std::string> vars, keys;
    if (vars_.IsMap())
      for (const auto& kv : vars_) vars.push_back(kv.first.Scalar());
    if (config_.IsMap())
      for (const auto& kv : config_) keys.push_back(kv.first.Scalar());
    fail(at, source_, fmt::format("unknown variable '${{{}}}'; vars: {}; configuration keys: {}{}", inner,
                                  vars.empty() ? "(none)" : fmt::format("{}", fmt::join(vars, ", ")),
                                  keys.empty() ? "(none)" : fmt::format("{}", fmt::join(keys, ", ")),
                                  seed_ ? "; also: seed" : ""));
  }

  // The variable must be set now (an experiment that cannot run is refused when planned). A name that is no
  // variable's name is not echoed: it is most likely the secret itself, pasted in place of its variable.
  void check_env_reference(const std::string& name, const YAML::Node& at) const {
    static const std::regex valid("[A-Za-z_][A-Za-z0-9_]*");
    if (!std::regex_match(name, valid))
      fail(at, source_, fmt::format("'${{env:...}}' must name an environment variable (letters, digits and _; {} "
                                    "characters found): is a value written there instead of its variable's name?",
                                    name.size()));
    if (!std::getenv(name.c_str())) fail(at, source_, fmt::format("environment variable '{}' is not set", name));
  }

  std::string source_;
  YAML::Node vars_, config_;
  std::optional<uint64_t> seed_;
  int64_t substitutions_ = 0;
};

// Every "${artifact:stage/name}" / "${trial:key}" in a node, with the scalar that holds it.
void find_runtime_refs(const YAML::Node& node, std::vector<std::pair<std::string, YAML::Node>>& out) {
  if (!node) return;
  if (node.IsScalar()) {
    static const std::regex re(R"(\$\{((artifact|trial):[^}]*)\})");
    const std::string& s = node.Scalar();
    for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator(); ++it)
      out.emplace_back((*it)[1].str(), node);
  } else if (node.IsMap()) {
    for (const auto& kv : node) find_runtime_refs(kv.second, out);
  } else if (node.IsSequence()) {
    for (const auto& c : node) find_runtime_refs(c, out);
  }
}

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// "a, b, c", or "(none)".
std::string list_text(const std::vector<std::string>& names) {
  return names.empty() ? "(none)" : fmt::format("{}", fmt::join(names, ", "));
}

std::vector<std::string> keys_of(const YAML::Node& map) {
  std::vector<std::string> out;
  if (map && map.IsMap())
    for (const auto& kv : map) out.push_back(kv.first.Scalar());
  return out;
}

// "file:line:column" of a node ("file" when it has no position, e.g. a key set by -o).
std::string position(const YAML::Node& node, const std::string& source) {
  const std::string w = yaml_where(node, source);
  return w.substr(0, w.size() - 2);
}

// ---- Sections ----------------------------------------------------------------------------------------------

struct StageTemplate {
  std::string name;
  PluginKind kind = PluginKind::Algorithm;
  std::string plugin;
  YAML::Node options;  // every key but name and the plugin's; a map of our own (values are the document's)
  YAML::Node where;    // the stage's node in the file
  YAML::Node when;     // {config key: value or [values]}: the trials this stage is part of (none: all)
};

// The document read section by section: what every trial starts from.
struct Sections {
  std::string source;
  YAML::Node doc;
  YAML::Node vars;      // resolved against themselves and the environment
  YAML::Node defaults;  // our own containers: -o sets paths in it
  std::vector<StageTemplate> stages;
  std::vector<uint64_t> seeds;
  bool seeds_given = false;

  std::vector<int> stages_named(const std::string& name) const {
    std::vector<int> out;
    for (size_t i = 0; i < stages.size(); ++i)
      if (stages[i].name == name) out.push_back(static_cast<int>(i));
    return out;
  }
  int stage_index(const std::string& name) const {
    for (size_t i = 0; i < stages.size(); ++i)
      if (stages[i].name == name) return static_cast<int>(i);
    return -1;
  }
  bool is_defaults_key(const std::string& name) const {
    const YAML::Node& d = defaults;  // const: never inserts
    return d.IsMap() && d[name];
  }
  std::string stage_names() const {
    std::vector<std::string> names;
    for (const auto& t : stages) names.push_back(t.name);
    return list_text(names);
  }
};

// Counts the values of `node`, an alias as many times as it is used, and stops past kMaxValues.
void count_values(const YAML::Node& node, int64_t& n, const std::string& source, int depth = 0) {
  if (++n > kMaxValues || depth > 512)
    throw ConfigError(fmt::format("{}: the file expands to more than {} values{} (YAML aliases used inside "
                                  "aliases?)", source, kMaxValues, depth > 512 ? " or nests past 512 levels" : ""));
  if (node.IsMap())
    for (const auto& kv : node) count_values(kv.second, n, source, depth + 1);
  else if (node.IsSequence())
    for (const auto& child : node) count_values(child, n, source, depth + 1);
}

YAML::Node load_document(const std::string& text, const std::string& source) {
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(fmt::format("{}:{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.mark.column + 1,
                                  e.msg));
  }
  if (!doc || !doc.IsMap())
    fail(doc, source, "expected a map at the top level (name, defaults, grid, stages, ...)");
  for (const auto& kv : doc) {
    const std::string key = kv.first.Scalar();
    if (!contains(kSections, key))
      fail(kv.first, source, fmt::format("unknown section '{}'; expected one of: {}", key, fmt::join(kSections, ", ")));
  }
  int64_t values = 0;
  count_values(doc, values, source);
  return doc;
}

std::vector<uint64_t> read_seeds(const YAML::Node& doc, const std::string& source) {
  if (!doc["seeds"] || doc["seeds"].IsNull()) return {kDefaultSeed};
  YAML::Node s = doc["seeds"];
  if (s.IsScalar()) {  // "1, 2, 3" (e.g. from -o seeds=1,2,3)
    try {
      s.reset(YAML::Load("[" + s.Scalar() + "]"));
    } catch (const YAML::Exception&) {
      fail(doc["seeds"], source, fmt::format("seeds: expected a list of integers, found '{}'", s.Scalar()));
    }
  }
  if (!s.IsSequence() || s.size() == 0) fail(doc["seeds"], source, "seeds: expected a non-empty list of integers");
  std::vector<uint64_t> seeds;
  for (const auto& v : s) {
    try {
      seeds.push_back(v.as<uint64_t>());
    } catch (const YAML::Exception&) {
      fail(v, source, fmt::format("seeds: expected a non-negative integer, found {}", describe(v)));
    }
  }
  return seeds;
}

// ${artifact:stage/name} may only name an earlier stage; ${trial:...} only dir or identity.
void check_runtime_refs(const StageTemplate& t, const std::vector<StageTemplate>& earlier,
                        const std::string& source) {
  std::vector<std::pair<std::string, YAML::Node>> refs;
  find_runtime_refs(t.options, refs);
  for (const auto& [ref, node] : refs) {
    if (starts_with(ref, "trial:")) {
      const std::string k = ref.substr(6);
      if (k != "dir" && k != "identity")
        fail(node, source, fmt::format("'${{{}}}': expected ${{trial:dir}} or ${{trial:identity}}", ref));
      continue;
    }
    const std::string body = ref.substr(9);
    const size_t slash = body.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == body.size())
      fail(node, source, fmt::format("'${{{}}}': expected ${{artifact:<stage>/<name>}}", ref));
    const std::string stage = body.substr(0, slash);
    if (std::none_of(earlier.begin(), earlier.end(), [&](const StageTemplate& e) { return e.name == stage; }))
      fail(node, source, fmt::format("'${{{}}}': no earlier stage is named '{}' (a stage can only use artifacts "
                                     "of the stages before it)", ref, stage));
  }
}

// A stage's `when: {method: dpo}` or `when: {method: [sft, dpo]}`: configuration keys and the values for which
// the stage is part of a trial. Alternatives of one step (one per method) share a stage name, so later stages
// refer to ${artifact:train/adapter} whichever ran.
YAML::Node read_when(const YAML::Node& when, const std::string& source) {
  if (!when.IsMap() || when.size() == 0)
    fail(when, source, "when: expected a map of configuration keys to a value or a list of values, e.g. "
                       "{method: dpo}");
  for (const auto& kv : when) {
    const bool scalars = kv.second.IsScalar() ||
        (kv.second.IsSequence() && kv.second.size() > 0 &&
         std::all_of(kv.second.begin(), kv.second.end(), [](const YAML::Node& v) { return v.IsScalar(); }));
    if (!scalars) fail(kv.second, source, fmt::format("when: '{}': expected a value or a non-empty list of values",
                                                      kv.first.Scalar()));
  }
  return when;
}

StageTemplate read_stage(const YAML::Node& st, const std::vector<StageTemplate>& earlier, const std::string& source) {
  static const std::regex name_re(R"([A-Za-z][A-Za-z0-9_-]*)");
  if (!st.IsMap()) fail(st, source, "stage: expected a map {name: ..., algorithm|benchmark|dataset: <plugin>, ...}");
  StageTemplate t;
  t.where.reset(st);
  t.options = new_container(YAML::NodeType::Map);
  int kinds = 0;
  for (const auto& kv : st) {
    const std::string key = kv.first.Scalar();
    if (key == "name") {
      t.name = kv.second.as<std::string>("");
      if (!std::regex_match(t.name, name_re))
        fail(kv.second, source, fmt::format("stage name '{}': expected letters, digits, '_' or '-', starting "
                                            "with a letter", t.name));
    } else if (contains(kStageKinds, key)) {
      ++kinds;
      if (!kv.second.IsScalar() || kv.second.Scalar().empty())
        fail(kv.second, source, fmt::format("{}: expected a plugin name", key));
      t.plugin = kv.second.Scalar();
      t.kind = key == "algorithm" ? PluginKind::Algorithm
               : key == "benchmark" ? PluginKind::Benchmark : PluginKind::Dataset;
    } else if (key == "when") {
      t.when.reset(read_when(kv.second, source));
    } else {
      t.options[key] = kv.second;
    }
  }
  if (kinds != 1)
    fail(st, source, fmt::format("stage: expected exactly one of {} naming the plugin that runs it, found {}",
                                 fmt::join(kStageKinds, ", "), kinds));
  if (t.name.empty()) t.name = t.plugin;
  if (contains(kSections, t.name))
    fail(st, source, fmt::format("stage name '{}' is a section's name (-o {}.… sets the section); give the stage "
                                 "another name", t.name, t.name));
  for (const auto& prev : earlier)
    if (prev.name == t.name && (!prev.when.IsMap() || !t.when.IsMap()))
      fail(st, source, fmt::format("stage name '{}' is used twice; give each stage a distinct name (alternatives "
                                   "of one step may share a name when each has a `when:`)", t.name));
  check_runtime_refs(t, earlier, source);
  return t;
}

std::vector<StageTemplate> read_stages(const YAML::Node& doc, const std::string& source) {
  const YAML::Node stages = doc["stages"];
  if (!stages || !stages.IsSequence() || stages.size() == 0)
    fail(stages ? stages : doc, source, "stages: expected a non-empty list, e.g. - {name: train, algorithm: dpo, ...}");
  std::vector<StageTemplate> out;
  for (const auto& st : stages) out.push_back(read_stage(st, out, source));
  return out;
}

Sections read_sections(const YAML::Node& doc, const std::string& source) {
  Sections s;
  s.source = source;
  s.doc.reset(doc);
  const YAML::Node vars = doc["vars"] ? doc["vars"] : YAML::Node(YAML::NodeType::Map);
  if (!vars.IsMap()) fail(vars, source, "vars: expected a map of name: value");
  s.vars = Resolver(source, vars, YAML::Node(YAML::NodeType::Map), std::nullopt).interpolate(vars);
  const YAML::Node defaults = doc["defaults"] ? doc["defaults"] : YAML::Node(YAML::NodeType::Map);
  if (!defaults.IsMap()) fail(defaults, source, "defaults: expected a map (the base configuration)");
  s.defaults = deep_copy(defaults);
  s.seeds_given = doc["seeds"] && !doc["seeds"].IsNull();
  s.seeds = read_seeds(doc, source);
  s.stages = read_stages(doc, source);
  return s;
}

// ---- Settings: where a dotted key goes ----------------------------------------------------------------------

struct Target {
  int stage = -1;    // index into Sections::stages; < 0: the trial's configuration
  std::string path;  // the configuration path, or the option path inside that stage
};

// One key = value of grid, zip, include, exclude or -o.
struct Setting {
  std::string key;    // as written ("train.lr"): the trial label shows it
  Target target;
  YAML::Node value;
  YAML::Node at;      // the key's node in the file (none for -o)
  std::string where;  // how errors about it start: "exp.yaml:7:3: " or "-o 'train.lr=1': "
};

// The rule (spec.h): a key whose first part is a top-level key of defaults: sets the configuration (defaults
// win over a stage of the same name); else one whose first part names a stage sets that stage's option at the
// rest of the path; else it sets the configuration.
Target target_of(const Sections& s, const std::string& key, const std::string& where) {
  const auto parts = split(key, '.');
  // An empty key has no parts at all (found by fuzz/fuzz_spec: parts[0] below read past the vector).
  if (parts.empty() || std::any_of(parts.begin(), parts.end(), [](const std::string& p) { return p.empty(); }))
    throw ConfigError(where + fmt::format("'{}': empty part in a dotted key", key));
  const int stage = s.is_defaults_key(parts[0]) ? -1 : s.stage_index(parts[0]);
  if (stage < 0) return {-1, key};
  if (parts.size() == 1)
    throw ConfigError(where + fmt::format("'{}' is a stage: name one of its options as {}.<option> (written in "
                                          "the file: {})", key, key, list_text(keys_of(s.stages[stage].options))));
  if (parts[1] == "name" || contains(kStageKinds, parts[1]))
    throw ConfigError(where + fmt::format("'{}': a stage's {} is not an option; grid and -o set options only", key,
                                          parts[1]));
  return {stage, key.substr(parts[0].size() + 1)};
}

Setting setting_at(const Sections& s, const YAML::Node& key_node, const YAML::Node& value) {
  Setting x;
  x.key = key_node.Scalar();
  x.at.reset(key_node);
  x.value.reset(value);
  x.where = yaml_where(key_node, s.source);
  x.target = target_of(s, x.key, x.where);
  return x;
}

// Writes a setting into `tree`: the configuration, or the options of the stage it names (our own containers).
void write_setting(const Sections& s, const Setting& x, YAML::Node tree) {
  if (x.target.stage < 0) return set_path(tree, x.target.path, x.value, x.where, "the configuration");
  const std::string& stage = s.stages[x.target.stage].name;
  set_path(tree, x.target.path, x.value, x.where, fmt::format("the options of stage '{}'", stage), stage + ".");
}

// The value a target has before any grid point sets it: the configuration's, or the stage option as written.
std::optional<std::string> default_of(const Sections& s, const Target& t) {
  const YAML::Node tree = t.stage < 0 ? s.defaults : s.stages[t.stage].options;
  if (YAML::Node d = get_path(tree, t.path)) return canonical_json(d);
  return std::nullopt;
}

// ---- Axes: grid and zip ------------------------------------------------------------------------------------

struct Axis {
  std::vector<Setting> keys;                    // the keys it varies (values unset)
  std::vector<std::vector<YAML::Node>> values;  // values[i][k]: the i-th setting of key k
};

YAML::Node require_list(const YAML::Node& node, const YAML::Node& key, const std::string& what,
                        const std::string& source) {
  if (!node.IsSequence() || node.size() == 0)
    fail(node ? node : key, source, fmt::format("{}: expected a non-empty list of values, found {}", what,
                                                describe(node)));
  return node;
}

void read_grid(const Sections& s, std::vector<Axis>& axes) {
  const YAML::Node grid = s.doc["grid"];
  if (!grid || grid.IsNull()) return;
  if (!grid.IsMap()) fail(grid, s.source, "grid: expected a map of dotted.key: [values]");
  for (const auto& kv : grid) {
    require_list(kv.second, kv.first, "grid key '" + kv.first.Scalar() + "'", s.source);
    Axis axis;
    axis.keys.push_back(setting_at(s, kv.first, YAML::Node()));
    for (const auto& v : kv.second) axis.values.push_back({v});
    axes.push_back(std::move(axis));
  }
}

Axis read_zip_group(const Sections& s, const YAML::Node& group) {
  if (!group.IsMap() || group.size() == 0)
    fail(group, s.source, "zip group: expected a map of dotted.key: [values] with lists of equal length");
  Axis axis;
  size_t n = 0;
  for (const auto& kv : group) {
    const std::string key = kv.first.Scalar();
    require_list(kv.second, kv.first, "zip key '" + key + "'", s.source);
    if (axis.keys.empty()) n = kv.second.size();
    if (kv.second.size() != n)
      fail(kv.second, s.source, fmt::format("zip key '{}': has {} values but '{}' has {}; zipped lists must have "
                                            "equal length", key, kv.second.size(), axis.keys[0].key, n));
    axis.keys.push_back(setting_at(s, kv.first, YAML::Node()));
  }
  for (size_t i = 0; i < n; ++i) {
    std::vector<YAML::Node> row;
    for (const auto& kv : group) row.push_back(kv.second[i]);
    axis.values.push_back(row);
  }
  return axis;
}

void read_zip(const Sections& s, std::vector<Axis>& axes) {
  const YAML::Node zip = s.doc["zip"];
  if (!zip || zip.IsNull()) return;
  if (zip.IsMap()) return axes.push_back(read_zip_group(s, zip));
  if (!zip.IsSequence()) fail(zip, s.source, "zip: expected a list of groups {key: [values], ...}");
  for (const auto& group : zip) axes.push_back(read_zip_group(s, group));
}

// Grid keys in file order, then zip groups; a key may be varied once.
std::vector<Axis> read_axes(const Sections& s) {
  std::vector<Axis> axes;
  read_grid(s, axes);
  read_zip(s, axes);
  std::set<std::string> seen;
  for (const auto& axis : axes)
    for (const auto& k : axis.keys)
      if (!seen.insert(k.key).second)
        fail(k.at, s.source, fmt::format("'{}' is varied twice (in grid and zip, or in two zip groups)", k.key));
  return axes;
}

// ---- Overrides (-o key=value) ------------------------------------------------------------------------------

struct Override {
  std::string text;  // as given: "train.lr=5e-5"
  std::string key;
  YAML::Node value;
  bool adds = false;  // "+key=value": the key may be new (Hydra's convention); without '+' it must exist
};

Override split_override(const std::string& text) {
  const bool adds = !text.empty() && text[0] == '+';
  const std::string body = adds ? text.substr(1) : text;
  const size_t eq = body.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("-o '{}': expected key=value (e.g. -o train.lr=1e-4)", text));
  Override o{text, body.substr(0, eq), YAML::Node(), adds};
  try {
    o.value = YAML::Load(body.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("-o '{}': the value is not valid YAML: {}", text, e.msg));
  }
  if (!o.value || o.value.IsNull()) o.value.reset(YAML::Node(std::string()));
  return o;
}

// Every dotted path in a tree of maps ("a", "a.b", ...), each with `prefix` before it.
void collect_paths(const YAML::Node& tree, const std::string& prefix, std::vector<std::string>& out) {
  if (!tree || !tree.IsMap()) return;
  for (const auto& kv : tree) {
    out.push_back(prefix + kv.first.Scalar());
    collect_paths(kv.second, prefix + kv.first.Scalar() + ".", out);
  }
}

// An -o without '+' sets a key the file has: a mistyped key (defaults.dpo.bta) would otherwise add a new value
// silently and give every trial a new identity. The error names the nearest existing key.
void require_existing(const Override& o, const YAML::Node& tree, const std::string& path, const std::string& prefix,
                      const std::string& source) {
  if (o.adds || get_path(tree, path)) return;
  std::vector<std::string> keys;
  collect_paths(tree, prefix, keys);
  const std::string wanted = prefix + path;
  std::string best;
  size_t best_distance = std::max<size_t>(2, wanted.size() / 3) + 1;
  for (const auto& k : keys)
    if (const size_t d = edit_distance(wanted, k); d < best_distance) best_distance = d, best = k;
  throw ConfigError(fmt::format("-o '{}': {} has no key '{}'{}; to add a new one write -o +{}", o.text, source, wanted,
                                best.empty() ? "" : fmt::format(" (did you mean '{}'?)", best), o.text));
}

// First pass, on the document before it is read: a key that starts with a section sets that path; a key the
// file's vars have sets the var. Returns false for any other key (a configuration value or a stage option).
bool apply_to_document(YAML::Node doc, const Override& o, const std::string& source) {
  const std::string root = split(o.key, '.')[0];
  const std::string rest = o.key.size() > root.size() ? o.key.substr(root.size() + 1) : "";
  const std::string where = "-o '" + o.text + "': ";
  if (contains(kSections, root)) {
    if (rest.empty()) {
      doc[root] = o.value;
    } else if (root == "grid") {
      if (!doc["grid"] || !doc["grid"].IsMap()) doc["grid"] = YAML::Node(YAML::NodeType::Map);
      doc["grid"][rest] = o.value;
    } else if (root == "defaults" || root == "vars") {
      require_existing(o, static_cast<const YAML::Node&>(doc)[root], rest, root + ".", source);
      if (!doc[root] || !doc[root].IsMap()) doc[root] = YAML::Node(YAML::NodeType::Map);
      set_path(doc[root], rest, o.value, where, root + ":");
    } else {
      throw ConfigError(where + fmt::format("'{}' takes a whole value (-o {}=...)", root, root));
    }
    return true;
  }
  const YAML::Node vars = doc["vars"];
  if (!vars || !get_path(vars, o.key)) return false;
  set_path(doc["vars"], o.key, o.value, where, "vars:");
  return true;
}

// Second pass: sets a configuration value (in the defaults) or a stage option (in its template), by the rule of
// target_of; never a key the grid or a zip group varies (each trial would set it again).
Setting apply_direct_override(Sections& s, const Override& o, const std::vector<Axis>& axes) {
  const std::string where = "-o '" + o.text + "': ";
  const std::string first = split(o.key, '.')[0];
  if (!s.is_defaults_key(first) && s.stage_index(first) < 0)
    throw ConfigError(where + fmt::format(
        "{} has no var, stage or defaults key '{}' (vars: {}; stages: {}; defaults: {}); -o <stage>.<option>=... "
        "sets a stage's option, -o defaults.{}=... adds a configuration value; sections: {}",
        s.source, first, list_text(keys_of(s.vars)), s.stage_names(), list_text(keys_of(s.defaults)), o.key,
        fmt::join(kSections, ", ")));
  for (const auto& axis : axes)
    for (const auto& k : axis.keys)
      if (k.key == o.key)
        throw ConfigError(where + fmt::format("'{}' is varied at {}, which sets it in every trial; to run one value "
                                              "use -o grid.{}=[...] (or edit the zip group)", o.key,
                                              position(k.at, s.source), o.key));
  Setting x{o.key, target_of(s, o.key, where), o.value, YAML::Node(), where};
  if (x.target.stage < 0) {
    // (A first part that is also a stage is the ambiguity check's, which says more.)
    if (s.stage_index(first) < 0) require_existing(o, s.defaults, o.key, "", s.source);
    write_setting(s, x, s.defaults);
    return x;
  }
  for (int i : s.stages_named(s.stages[x.target.stage].name)) {  // every alternative of that step
    StageTemplate& t = s.stages[i];
    t.options.reset(deep_copy(t.options));  // never write into the document's nodes
    write_setting(s, x, t.options);
  }
  return x;
}

// ---- Points: the product, exclude, include -----------------------------------------------------------------

using Point = std::vector<Setting>;

// Refuses a grid whose product of axes times seeds (before exclude) exceeds max_trials, counting without making it.
void check_grid_size(const Sections& s, const std::vector<Axis>& axes) {
  int64_t limit = kDefaultMaxTrials;
  if (const YAML::Node m = s.doc["max_trials"]; m && !m.IsNull()) {
    try {
      limit = m.as<int64_t>();
    } catch (const YAML::Exception&) {
      limit = 0;
    }
    if (limit < 1) fail(m, s.source, "max_trials: expected a positive whole number");
  }
  long double points = 1;
  std::string shape;
  for (const auto& axis : axes) {
    points *= static_cast<long double>(axis.values.size());
    shape += fmt::format("{}{} ({})", shape.empty() ? "" : " x ", axis.values.size(), axis.keys.front().key);
  }
  const long double trials = points * static_cast<long double>(s.seeds.size());
  if (trials > static_cast<long double>(limit))
    fail(s.doc["grid"] ? s.doc["grid"] : s.doc, s.source,
         fmt::format("the grid expands to {:.0f} trials ({} x {} seed(s), before exclude), more than max_trials ({}); "
                     "set max_trials: in the file (or -o max_trials=N) if that many are meant",
                     static_cast<double>(trials), shape, s.seeds.size(), limit));
}

// The cartesian product of the axes, last axis fastest.
std::vector<Point> cartesian(const std::vector<Axis>& axes) {
  std::vector<Point> points(1);
  for (const auto& axis : axes) {
    std::vector<Point> next;
    for (const auto& p : points)
      for (const auto& row : axis.values) {
        Point q = p;
        for (size_t k = 0; k < axis.keys.size(); ++k) {
          q.push_back(axis.keys[k]);
          q.back().value.reset(row[k]);
        }
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  return points;
}

// An include or exclude entry: a map of dotted.key: value.
struct Entry {
  YAML::Node node;
  std::vector<Setting> settings;
};

std::vector<Entry> read_entries(const Sections& s, const std::string& section) {
  std::vector<Entry> entries;
  const YAML::Node list = s.doc[section];
  if (!list || list.IsNull()) return entries;
  if (!list.IsSequence())
    fail(list, s.source, fmt::format("{}: expected a list of maps {{dotted.key: value}}", section));
  for (const auto& e : list) {
    if (!e.IsMap() || e.size() == 0)
      fail(e, s.source, fmt::format("{} entry: expected a map {{dotted.key: value}}", section));
    Entry entry{e, {}};
    for (const auto& kv : e) entry.settings.push_back(setting_at(s, kv.first, kv.second));
    entries.push_back(std::move(entry));
  }
  return entries;
}

// Whether a point has every key = value of an entry; a key the point does not vary has its default.
bool matches(const Sections& s, const Point& point, const Entry& entry) {
  for (const auto& want : entry.settings) {
    std::optional<std::string> actual = default_of(s, want.target);
    for (const auto& x : point)
      if (x.key == want.key) actual = canonical_json(x.value);
    if (!actual || *actual != canonical_json(want.value)) return false;
  }
  return true;
}

// Drops the points an exclude entry matches; an entry that matches none is an error (a typo, most likely).
std::vector<Point> apply_excludes(const Sections& s, std::vector<Point> points) {
  const auto excludes = read_entries(s, "exclude");
  std::vector<size_t> hits(excludes.size(), 0);
  std::vector<Point> kept;
  for (auto& p : points) {
    const auto hit = std::find_if(excludes.begin(), excludes.end(), [&](const Entry& e) { return matches(s, p, e); });
    if (hit == excludes.end()) kept.push_back(std::move(p));
    else ++hits[hit - excludes.begin()];
  }
  for (size_t e = 0; e < excludes.size(); ++e)
    if (hits[e] == 0) fail(excludes[e].node, s.source, "exclude entry matches no grid point (a typo in a key or value?)");
  return kept;
}

std::vector<Entry> read_includes(const Sections& s) {
  auto includes = read_entries(s, "include");
  for (const auto& e : includes)
    for (const auto& x : e.settings)
      if (x.value.IsSequence())
        fail(x.value, s.source, "include entry: expected one value per key (an include adds one point)");
  return includes;
}

// ---- The ambiguity check -----------------------------------------------------------------------------------

// Every ${name} written in a node (not env:, artifact: or trial:).
void collect_refs(const YAML::Node& node, std::set<std::string>& out) {
  if (!node) return;
  if (node.IsScalar()) {
    static const std::regex re(R"(\$\{([^}:]+)\})");
    const std::string& s = node.Scalar();
    for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator(); ++it)
      out.insert((*it)[1].str());
  } else if (node.IsMap()) {
    for (const auto& kv : node) collect_refs(kv.second, out);
  } else if (node.IsSequence()) {
    for (const auto& c : node) collect_refs(c, out);
  }
}

// A key whose first part is both a defaults key and a stage sets the configuration (defaults win). When no
// ${...} reads that configuration value, the writer meant the stage's option: say so instead of ignoring it.
void check_ambiguous_keys(const Sections& s, const std::vector<const Setting*>& settings) {
  std::set<std::string> refs;
  collect_refs(s.defaults, refs);
  for (const auto& t : s.stages) collect_refs(t.options, refs);
  for (const char* section : {"grid", "zip", "include"}) collect_refs(s.doc[section], refs);
  for (const Setting* x : settings) {
    const std::string first = split(x->key, '.')[0];
    if (x->target.stage >= 0 || s.stage_index(first) < 0) continue;
    const bool read = std::any_of(refs.begin(), refs.end(), [&](const std::string& r) {
      return !get_path(s.vars, r) && (r == x->key || starts_with(x->key, r + ".") || starts_with(r, x->key + "."));
    });
    if (read) continue;
    YAML::Node defaults_key;
    for (const auto& kv : s.doc["defaults"])
      if (kv.first.Scalar() == first) defaults_key.reset(kv.first);
    throw ConfigError(x->where + fmt::format(
        "'{}': '{}' is both a key of defaults: ({}) and a stage ({}); defaults win, so this sets the configuration "
        "value {}, but no ${{...}} refers to it. To set the stage's option directly, rename the defaults key '{}'; "
        "to use the configuration value, refer to ${{{}}} in the stage", x->key, first,
        position(defaults_key, s.source), position(s.stages[s.stage_index(first)].where, s.source), x->key, first,
        x->key));
  }
}

// ---- Trials ------------------------------------------------------------------------------------------------

std::string resolved_json_of(const Trial& trial) {
  YAML::Node stages = new_container(YAML::NodeType::Sequence);
  for (const auto& s : trial.stages) {
    YAML::Node sj = new_container(YAML::NodeType::Map);
    sj["name"] = s.name;
    sj["kind"] = kind_name(s.kind);
    sj["plugin"] = s.plugin;
    sj["options"] = s.options;
    stages.push_back(sj);
  }
  YAML::Node resolved = new_container(YAML::NodeType::Map);
  resolved["config"] = trial.config;
  resolved["seed"] = trial.seed;
  resolved["stages"] = stages;
  return canonical_json(resolved);
}

// Whether a stage is part of the trial: every key of its `when:` has one of the listed values in the trial's
// configuration (compared as canonical JSON, so 0.5 and 5.0e-1 agree).
bool stage_applies(const Sections& s, const StageTemplate& t, const Trial& trial) {
  if (!t.when.IsMap()) return true;
  for (const auto& kv : t.when) {
    const std::string key = kv.first.Scalar();
    const YAML::Node have = get_path(trial.config, key);
    if (!have)
      fail(kv.first, s.source, fmt::format("when: '{}' is not a key of the trial's configuration (defaults: {})", key,
                                           list_text(keys_of(trial.config))));
    const std::string value = canonical_json(have);
    bool any = false;
    if (kv.second.IsScalar()) any = canonical_json(kv.second) == value;
    for (const auto& v : kv.second)  // a sequence; no iterations for a scalar
      any = any || canonical_json(v) == value;
    if (!any) return false;
  }
  return true;
}

// A trial runs each stage name once, and a stage only uses artifacts of stages that are part of the same trial.
void check_trial_stages(const Sections& s, const Trial& trial) {
  std::set<std::string> seen;
  for (const auto& st : trial.stages) {
    std::vector<std::pair<std::string, YAML::Node>> refs;
    find_runtime_refs(st.options, refs);
    for (const auto& [ref, node] : refs) {
      if (!starts_with(ref, "artifact:")) continue;
      const std::string stage = ref.substr(9, ref.find('/') - 9);
      if (!seen.count(stage))
        fail(node, s.source, fmt::format("'${{{}}}': stage '{}' is not part of the trial [{}] (its `when:` leaves "
                                         "it out)", ref, stage, trial.label));
    }
    if (!seen.insert(st.name).second)
      fail(st.where, s.source, fmt::format("two alternatives of stage '{}' apply to the trial [{}]: make their "
                                           "`when:` conditions exclusive", st.name, trial.label));
  }
}

// The stage of a trial from its template and resolved options: `ranks` and `devices` are taken out of the
// options (they say how the stage runs, not what it computes).
StageSpec stage_spec(const Sections& s, const StageTemplate& t, YAML::Node options) {
  StageSpec st{t.name, t.kind, t.plugin, options, t.where};
  if (const YAML::Node d = options["devices"]) {
    if (!d.IsSequence() || d.size() == 0)
      fail(d, s.source, "devices: expected a non-empty list of GPU numbers, e.g. [0, 1] (one data-parallel rank each)");
    for (const auto& v : d) {
      if (!v.IsScalar() || v.Scalar().empty()) fail(v, s.source, "devices: expected GPU numbers");
      st.devices.push_back(v.Scalar());
    }
    st.ranks = static_cast<int>(st.devices.size());
  }
  if (const YAML::Node r = options["ranks"]) {
    const int n = r.IsScalar() ? r.as<int>(0) : 0;
    if (n < 1 || n > 256) fail(r, s.source, "ranks: expected a number of data-parallel processes from 1 to 256");
    if (!st.devices.empty() && n != st.ranks)
      fail(r, s.source, fmt::format("ranks: {} but devices lists {}; give one of them", n, st.ranks));
    st.ranks = n;
  }
  st.options.remove("devices");
  st.options.remove("ranks");
  return st;
}

// One trial: the defaults and stage templates with the point's settings written in, then interpolated.
Trial make_trial(const Sections& s, const Point& point, uint64_t seed) {
  Trial trial;
  trial.seed = seed;
  YAML::Node config = deep_copy(s.defaults);
  std::vector<YAML::Node> options;
  for (const auto& t : s.stages) options.push_back(deep_copy(t.options));
  std::vector<std::string> label;
  for (const auto& x : point) {
    if (x.target.stage < 0) write_setting(s, x, config);
    else
      for (int i : s.stages_named(s.stages[x.target.stage].name)) write_setting(s, x, options[i]);
    label.push_back(x.key + "=" + value_text(x.value));
  }
  if (s.seeds_given) label.push_back("seed=" + std::to_string(seed));
  trial.label = fmt::format("{}", fmt::join(label, " "));
  // The configuration may refer to vars, the seed and to itself; stage options to all of these.
  trial.config = Resolver(s.source, s.vars, config, seed).interpolate(config);
  Resolver stage_resolver(s.source, s.vars, trial.config, seed);
  for (size_t i = 0; i < s.stages.size(); ++i) {
    const StageTemplate& t = s.stages[i];
    if (!stage_applies(s, t, trial)) continue;
    trial.stages.push_back(stage_spec(s, t, stage_resolver.interpolate(options[i])));
  }
  check_trial_stages(s, trial);
  trial.resolved_json = resolved_json_of(trial);
  trial.identity = sha256_hex(trial.resolved_json);
  return trial;
}

// Every point once per seed, in order; a trial whose identity repeats an earlier one is dropped.
void expand_trials(const Sections& s, const std::vector<Point>& points, Experiment& exp) {
  std::set<std::string> identities;
  for (const auto& point : points)
    for (uint64_t seed : s.seeds) {
      Trial trial = make_trial(s, point, seed);
      if (!identities.insert(trial.identity).second) {
        ++exp.duplicates_dropped;
        continue;
      }
      trial.ordinal = static_cast<int64_t>(exp.trials.size());
      exp.trials.push_back(std::move(trial));
    }
}

}  // namespace

std::string yaml_where(const YAML::Node& node, const std::string& source) {
  if (!node) return source + ": ";
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0 || (mark.line == 0 && mark.column == 0 && mark.pos == 0)) return source + ": ";
  return fmt::format("{}:{}:{}: ", source, mark.line + 1, mark.column + 1);
}

std::string canonical_json(const YAML::Node& node) {
  std::function<nlohmann::json(const YAML::Node&)> conv = [&](const YAML::Node& n) -> nlohmann::json {
    if (!n || n.IsNull()) return nullptr;
    if (n.IsMap()) {
      nlohmann::json obj = nlohmann::json::object();
      for (const auto& kv : n) obj[kv.first.Scalar()] = conv(kv.second);
      return obj;
    }
    if (n.IsSequence()) {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& c : n) arr.push_back(conv(c));
      return arr;
    }
    const std::string& s = n.Scalar();
    if (n.Tag() == "!") return s;  // quoted: always a string
    static const std::regex int_re(R"([-+]?[0-9]+)");
    static const std::regex float_re(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
    if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (std::regex_match(s, int_re)) {
      try {
        return std::stoll(s);
      } catch (const std::out_of_range&) {
        return s;
      }
    }
    if (std::regex_match(s, float_re)) return std::strtod(s.c_str(), nullptr);
    return s;
  };
  // Invalid UTF-8 (from the file's bytes, an -o value or ${env:...}) is written as U+FFFD rather than thrown by
  // dump(): a type_error from here would escape the ConfigError callers expect (found by fuzz/fuzz_spec).
  return dump_text(conv(node));
}

namespace {

// `node` with every match of `re` in its texts replaced by lookup(group 1, group 2).
YAML::Node substitute(const YAML::Node& node, const std::regex& re,
                      const std::function<std::string(const std::string&, const std::string&)>& lookup) {
  if (!node || node.IsNull()) return node;
  if (node.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = substitute(kv.second, re, lookup);
    return out;
  }
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& c : node) out.push_back(substitute(c, re, lookup));
    return out;
  }
  const std::string& s = node.Scalar();
  if (!std::regex_search(s, re)) return node;
  std::string out;
  auto begin = s.cbegin();
  for (std::smatch m; std::regex_search(begin, s.cend(), m, re); begin = m.suffix().first) {
    out.append(begin, m[0].first);
    out += lookup(m[1].str(), m[2].str());
  }
  out.append(begin, s.cend());
  return YAML::Node(out);
}

}  // namespace

YAML::Node resolve_runtime(const YAML::Node& node,
                           const std::function<std::string(const std::string&, const std::string&)>& lookup) {
  static const std::regex re(R"(\$\{(artifact|trial):([^}]*)\})");
  return substitute(node, re, lookup);
}

YAML::Node resolve_env(const YAML::Node& node) {
  static const std::regex re(R"(\$\{(env):([A-Za-z_][A-Za-z0-9_]*)\})");
  return substitute(node, re, [](const std::string&, const std::string& name) {
    const char* value = std::getenv(name.c_str());
    if (!value)
      throw ConfigError(fmt::format("environment variable '{}' is not set (it was when the experiment was planned)",
                                    name));
    register_secret(value, "${env:" + name + "}");
    return std::string(value);
  });
}

Experiment load_experiment(const fs::path& file, const std::vector<std::string>& overrides) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open experiment file '{}' for reading", file.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  Experiment exp = parse_experiment(ss.str(), file.string(), overrides);
  exp.source = file;
  return exp;
}

Experiment parse_experiment(const std::string& text, const std::string& source,
                            const std::vector<std::string>& overrides) {
  YAML::Node doc = load_document(text, source);
  YamlPool pool;
  pool.adopt(doc);
  std::vector<Override> direct;  // -o on a configuration value or a stage option: applied once both are read
  for (const auto& o : overrides) {
    Override ov = split_override(o);
    if (!apply_to_document(doc, ov, source)) direct.push_back(std::move(ov));
  }
  Experiment exp;
  exp.pool = pool.anchor();
  exp.text = text;
  exp.source = source;
  if (!doc["name"] || !doc["name"].IsScalar() || doc["name"].Scalar().empty())
    fail(doc["name"] ? doc["name"] : doc, source, "expected 'name: <experiment name>' (a non-empty string)");
  exp.name = doc["name"].Scalar();
  // The name is a folder under the results folder: it must stay one folder there.
  if (exp.name == "." || exp.name == ".." || exp.name.find('/') != std::string::npos ||
      exp.name.find('\0') != std::string::npos)
    fail(doc["name"], source, fmt::format("name: '{}' is not a folder name (it names the experiment's folder under the "
                                          "results folder: no '/', not '.' or '..')", exp.name));
  if (doc["description"]) exp.description = doc["description"].as<std::string>("");

  Sections s = read_sections(doc, source);
  const std::vector<Axis> axes = read_axes(s);
  std::vector<Setting> applied;
  for (const auto& o : direct) applied.push_back(apply_direct_override(s, o, axes));
  check_grid_size(s, axes);
  std::vector<Point> points = apply_excludes(s, cartesian(axes));
  const std::vector<Entry> includes = read_includes(s);
  for (const auto& e : includes) points.push_back(e.settings);

  std::vector<const Setting*> settings;
  for (const auto& axis : axes)
    for (const auto& k : axis.keys) settings.push_back(&k);
  for (const auto& e : includes)
    for (const auto& x : e.settings) settings.push_back(&x);
  for (const auto& x : applied) settings.push_back(&x);
  check_ambiguous_keys(s, settings);

  expand_trials(s, points, exp);
  return exp;
}

}  // namespace mmr
