// Experiment spec parsing, interpolation and grid expansion. See spec.h for the format.
//
// yaml-cpp nodes share their data on assignment, so this file never changes a node that came from the
// parsed document once copies exist: trial configurations are new containers whose untouched scalars are
// the document's own nodes (which keeps their line:column for error messages).
#include "core/spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "core/lib/util/sha256.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

const std::vector<std::string> kSections = {"name", "description", "vars",    "defaults", "grid",
                                            "zip",  "seeds",       "include", "exclude",  "stages"};
const std::vector<std::string> kStageKinds = {"algorithm", "benchmark", "dataset"};
constexpr uint64_t kDefaultSeed = 42;  // HF Trainer's default, which the paper's scripts kept
constexpr int kMaxDepth = 32;

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

// New containers all the way down; scalars are shared (never modified in place).
YAML::Node deep_copy(const YAML::Node& node) {
  if (!node || node.IsNull() || node.IsScalar()) return node;
  if (node.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = deep_copy(kv.second);
    return out;
  }
  YAML::Node out(YAML::NodeType::Sequence);
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
    } else if (cur.IsSequence() && !part.empty() && part.find_first_not_of("0123456789") == std::string::npos) {
      const size_t i = std::stoul(part);
      if (i >= cur.size()) return YAML::Node(YAML::NodeType::Undefined);
      cur.reset(static_cast<const YAML::Node&>(cur)[i]);
    } else {
      return YAML::Node(YAML::NodeType::Undefined);
    }
  }
  return cur;
}

// Sets root.a.b.c = value in a tree of our own containers; `at` positions errors.
void set_path(YAML::Node root, const std::string& dotted, const YAML::Node& value, const YAML::Node& at,
              const std::string& source) {
  const auto parts = split(dotted, '.');
  for (const auto& p : parts)
    if (p.empty()) fail(at, source, fmt::format("'{}': empty part in a dotted key", dotted));
  YAML::Node cur = root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node next = cur[parts[i]];
    if (!next || next.IsNull()) {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      next.reset(cur[parts[i]]);
    } else if (!next.IsMap()) {
      fail(at, source, fmt::format("'{}': '{}' is {} in the configuration, not a map", dotted,
                                   fmt::join(parts.begin(), parts.begin() + i + 1, "."), describe(next)));
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
      YAML::Node out(YAML::NodeType::Map);
      for (const auto& kv : node) out[kv.first.Scalar()] = interpolate(kv.second, depth);
      return out;
    }
    YAML::Node out(YAML::NodeType::Sequence);
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
      }
      i = end + 1;
    }
    return changed ? YAML::Node(out) : node;
  }

  YAML::Node resolve(const std::string& inner, const YAML::Node& at, int depth) {
    if (inner.rfind("env:", 0) == 0) {
      const std::string name = inner.substr(4);
      const char* v = std::getenv(name.c_str());
      if (!v) fail(at, source_, fmt::format("environment variable '{}' is not set", name));
      return YAML::Node(std::string(v));
    }
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

  std::string source_;
  YAML::Node vars_, config_;
  std::optional<uint64_t> seed_;
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

struct Axis {
  std::vector<std::pair<std::string, YAML::Node>> keys;  // dotted key and its key node (for positions)
  std::vector<std::vector<YAML::Node>> values;           // values[i][k]: the i-th setting of key k
};

struct Point {
  std::vector<std::tuple<std::string, YAML::Node, YAML::Node>> settings;  // key, value, key node
};

YAML::Node require_list(const YAML::Node& node, const YAML::Node& key, const std::string& what,
                        const std::string& source) {
  if (!node.IsSequence() || node.size() == 0)
    fail(node ? node : key, source, fmt::format("{}: expected a non-empty list of values, found {}", what,
                                                describe(node)));
  return node;
}

void apply_override(YAML::Node doc, const std::string& text, const std::string& source) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("-o '{}': expected key=value (e.g. -o defaults.train.lr=1e-4)", text));
  const std::string key = text.substr(0, eq);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("-o '{}': the value is not valid YAML: {}", text, e.msg));
  }
  if (!value || value.IsNull()) value.reset(YAML::Node(std::string()));
  const auto parts = split(key, '.');
  const std::string& root = parts[0];
  const std::string rest = key.size() > root.size() ? key.substr(root.size() + 1) : "";
  const std::string where = "-o " + text;
  if (std::find(kSections.begin(), kSections.end(), root) != kSections.end()) {
    if (rest.empty()) {
      doc[root] = value;
    } else if (root == "grid") {
      if (!doc["grid"] || !doc["grid"].IsMap()) doc["grid"] = YAML::Node(YAML::NodeType::Map);
      doc["grid"][rest] = value;
    } else if (root == "defaults" || root == "vars") {
      if (!doc[root] || !doc[root].IsMap()) doc[root] = YAML::Node(YAML::NodeType::Map);
      set_path(doc[root], rest, value, YAML::Node(), where);
    } else {
      throw ConfigError(fmt::format("-o '{}': '{}' takes a whole value (-o {}=...)", text, root, root));
    }
    return;
  }
  YAML::Node vars = doc["vars"];
  if (!vars || !get_path(vars, key)) {
    std::vector<std::string> names;
    if (vars && vars.IsMap())
      for (const auto& kv : vars) names.push_back(kv.first.Scalar());
    throw ConfigError(fmt::format(
        "-o '{}': {} has no var '{}' (vars: {}); to set a configuration value use -o defaults.{}=..., or a "
        "section: {}",
        text, source, key, names.empty() ? "(none)" : fmt::format("{}", fmt::join(names, ", ")), key,
        fmt::join(kSections, ", ")));
  }
  set_path(doc["vars"], key, value, YAML::Node(), where);
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
  return conv(node).dump();
}

YAML::Node resolve_runtime(const YAML::Node& node,
                           const std::function<std::string(const std::string&, const std::string&)>& lookup) {
  if (!node || node.IsNull()) return node;
  if (node.IsMap()) {
    YAML::Node out(YAML::NodeType::Map);
    for (const auto& kv : node) out[kv.first.Scalar()] = resolve_runtime(kv.second, lookup);
    return out;
  }
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& c : node) out.push_back(resolve_runtime(c, lookup));
    return out;
  }
  static const std::regex re(R"(\$\{(artifact|trial):([^}]*)\})");
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
    if (std::find(kSections.begin(), kSections.end(), key) == kSections.end())
      fail(kv.first, source, fmt::format("unknown section '{}'; expected one of: {}", key, fmt::join(kSections, ", ")));
  }
  for (const auto& o : overrides) apply_override(doc, o, source);

  Experiment exp;
  exp.text = text;
  exp.source = source;
  if (!doc["name"] || !doc["name"].IsScalar() || doc["name"].Scalar().empty())
    fail(doc["name"] ? doc["name"] : doc, source, "expected 'name: <experiment name>' (a non-empty string)");
  exp.name = doc["name"].Scalar();
  if (doc["description"]) exp.description = doc["description"].as<std::string>("");

  // vars: resolved against themselves and the environment.
  YAML::Node vars_raw = doc["vars"] ? doc["vars"] : YAML::Node(YAML::NodeType::Map);
  if (!vars_raw.IsMap()) fail(vars_raw, source, "vars: expected a map of name: value");
  YAML::Node vars = Resolver(source, vars_raw, YAML::Node(YAML::NodeType::Map), std::nullopt).interpolate(vars_raw);

  YAML::Node defaults = doc["defaults"] ? doc["defaults"] : YAML::Node(YAML::NodeType::Map);
  if (!defaults.IsMap()) fail(defaults, source, "defaults: expected a map (the base configuration)");

  // Axes: grid keys in file order, then zip groups.
  std::vector<Axis> axes;
  if (YAML::Node grid = doc["grid"]; grid && !grid.IsNull()) {
    if (!grid.IsMap()) fail(grid, source, "grid: expected a map of dotted.key: [values]");
    for (const auto& kv : grid) {
      const std::string key = kv.first.Scalar();
      require_list(kv.second, kv.first, "grid key '" + key + "'", source);
      Axis axis;
      axis.keys.emplace_back(key, kv.first);
      for (const auto& v : kv.second) axis.values.push_back({v});
      axes.push_back(std::move(axis));
    }
  }
  if (YAML::Node zip = doc["zip"]; zip && !zip.IsNull()) {
    YAML::Node groups(YAML::NodeType::Sequence);
    if (zip.IsMap()) groups.push_back(zip);
    else groups.reset(zip);
    if (!groups.IsSequence()) fail(zip, source, "zip: expected a list of groups {key: [values], ...}");
    for (const auto& group : groups) {
      if (!group.IsMap() || group.size() == 0)
        fail(group, source, "zip group: expected a map of dotted.key: [values] with lists of equal length");
      Axis axis;
      size_t n = 0;
      for (const auto& kv : group) {
        const std::string key = kv.first.Scalar();
        require_list(kv.second, kv.first, "zip key '" + key + "'", source);
        if (axis.keys.empty()) n = kv.second.size();
        if (kv.second.size() != n)
          fail(kv.second, source, fmt::format("zip key '{}': has {} values but '{}' has {}; zipped lists must have "
                                              "equal length", key, kv.second.size(), axis.keys[0].first, n));
        axis.keys.emplace_back(key, kv.first);
      }
      for (size_t i = 0; i < n; ++i) {
        std::vector<YAML::Node> row;
        for (const auto& [key, knode] : axis.keys) row.push_back(group[key][i]);
        axis.values.push_back(row);
      }
      axes.push_back(std::move(axis));
    }
  }
  {
    std::set<std::string> seen;
    for (const auto& axis : axes)
      for (const auto& [key, knode] : axis.keys)
        if (!seen.insert(key).second)
          fail(knode, source, fmt::format("'{}' is varied twice (in grid and zip, or in two zip groups)", key));
  }

  // The cartesian product, last axis fastest.
  std::vector<Point> points(1);
  for (const auto& axis : axes) {
    std::vector<Point> next;
    for (const auto& p : points)
      for (const auto& row : axis.values) {
        Point q = p;
        for (size_t k = 0; k < axis.keys.size(); ++k)
          q.settings.emplace_back(axis.keys[k].first, row[k], axis.keys[k].second);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }

  // exclude: drop points that match every key of an entry.
  auto parse_entries = [&](const char* section) {
    std::vector<YAML::Node> entries;
    YAML::Node list = doc[section];
    if (!list || list.IsNull()) return entries;
    if (!list.IsSequence()) fail(list, source, fmt::format("{}: expected a list of maps {{dotted.key: value}}", section));
    for (const auto& e : list) {
      if (!e.IsMap() || e.size() == 0) fail(e, source, fmt::format("{} entry: expected a map {{dotted.key: value}}", section));
      entries.push_back(e);
    }
    return entries;
  };
  const auto excludes = parse_entries("exclude");
  std::vector<size_t> exclude_hits(excludes.size(), 0);
  {
    std::vector<Point> kept;
    for (const auto& p : points) {
      bool drop = false;
      for (size_t e = 0; e < excludes.size() && !drop; ++e) {
        bool all = true;
        for (const auto& kv : excludes[e]) {
          const std::string key = kv.first.Scalar();
          std::optional<std::string> actual;  // a key the point does not vary keeps its default
          if (YAML::Node d = get_path(defaults, key)) actual = canonical_json(d);
          for (const auto& [k, v, knode] : p.settings)
            if (k == key) actual = canonical_json(v);
          const bool matched = actual && *actual == canonical_json(kv.second);
          all = all && matched;
        }
        if (all) {
          drop = true;
          ++exclude_hits[e];
        }
      }
      if (!drop) kept.push_back(p);
    }
    points = std::move(kept);
  }
  for (size_t e = 0; e < excludes.size(); ++e)
    if (exclude_hits[e] == 0)
      fail(excludes[e], source, "exclude entry matches no grid point (a typo in a key or value?)");
  for (const auto& inc : parse_entries("include")) {
    Point p;
    for (const auto& kv : inc) {
      if (kv.second.IsSequence())
        fail(kv.second, source, "include entry: expected one value per key (an include adds one point)");
      p.settings.emplace_back(kv.first.Scalar(), kv.second, kv.first);
    }
    points.push_back(std::move(p));
  }

  // seeds
  std::vector<uint64_t> seeds;
  const bool seeds_given = doc["seeds"] && !doc["seeds"].IsNull();
  if (seeds_given) {
    YAML::Node s = doc["seeds"];
    if (s.IsScalar()) s.reset(YAML::Load("[" + s.Scalar() + "]"));
    if (!s.IsSequence() || s.size() == 0) fail(doc["seeds"], source, "seeds: expected a non-empty list of integers");
    for (const auto& v : s) {
      try {
        seeds.push_back(v.as<uint64_t>());
      } catch (const YAML::Exception&) {
        fail(v, source, fmt::format("seeds: expected a non-negative integer, found {}", describe(v)));
      }
    }
  } else {
    seeds.push_back(kDefaultSeed);
  }

  // Stage templates.
  YAML::Node stages_node = doc["stages"];
  if (!stages_node || !stages_node.IsSequence() || stages_node.size() == 0)
    fail(stages_node ? stages_node : doc, source,
         "stages: expected a non-empty list, e.g. - {name: train, algorithm: dpo, ...}");
  struct StageTemplate {
    std::string name;
    PluginKind kind;
    std::string plugin;
    YAML::Node options;
    YAML::Node where;
  };
  std::vector<StageTemplate> templates;
  static const std::regex name_re(R"([A-Za-z][A-Za-z0-9_-]*)");
  for (const auto& st : stages_node) {
    if (!st.IsMap()) fail(st, source, "stage: expected a map {name: ..., algorithm|benchmark|dataset: <plugin>, ...}");
    StageTemplate t;
    t.where.reset(st);
    t.options = YAML::Node(YAML::NodeType::Map);
    int kinds = 0;
    for (const auto& kv : st) {
      const std::string key = kv.first.Scalar();
      if (key == "name") {
        t.name = kv.second.as<std::string>("");
        if (!std::regex_match(t.name, name_re))
          fail(kv.second, source, fmt::format("stage name '{}': expected letters, digits, '_' or '-', starting "
                                              "with a letter", t.name));
      } else if (std::find(kStageKinds.begin(), kStageKinds.end(), key) != kStageKinds.end()) {
        ++kinds;
        if (!kv.second.IsScalar() || kv.second.Scalar().empty())
          fail(kv.second, source, fmt::format("{}: expected a plugin name", key));
        t.plugin = kv.second.Scalar();
        t.kind = key == "algorithm" ? PluginKind::Algorithm
                 : key == "benchmark" ? PluginKind::Benchmark : PluginKind::Dataset;
      } else {
        t.options[key] = kv.second;
      }
    }
    if (kinds != 1)
      fail(st, source, fmt::format("stage: expected exactly one of {} naming the plugin that runs it, found {}",
                                   fmt::join(kStageKinds, ", "), kinds));
    if (t.name.empty()) t.name = t.plugin;
    for (const auto& prev : templates)
      if (prev.name == t.name)
        fail(st, source, fmt::format("stage name '{}' is used twice; give each stage a distinct name", t.name));
    std::vector<std::pair<std::string, YAML::Node>> refs;
    find_runtime_refs(t.options, refs);
    for (const auto& [ref, node] : refs) {
      if (ref.rfind("trial:", 0) == 0) {
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
      bool earlier = false;
      for (const auto& prev : templates) earlier |= prev.name == stage;
      if (!earlier)
        fail(node, source, fmt::format("'${{{}}}': no earlier stage is named '{}' (a stage can only use artifacts "
                                       "of the stages before it)", ref, stage));
    }
    templates.push_back(std::move(t));
  }

  // Trials.
  std::set<std::string> identities;
  for (const auto& point : points) {
    for (uint64_t seed : seeds) {
      Trial trial;
      trial.seed = seed;
      YAML::Node config = deep_copy(defaults);
      std::vector<std::string> label;
      for (const auto& [key, value, knode] : point.settings) {
        set_path(config, key, value, knode, source);
        label.push_back(key + "=" + value_text(value));
      }
      if (seeds_given) label.push_back("seed=" + std::to_string(seed));
      trial.label = fmt::format("{}", fmt::join(label, " "));
      // The configuration may refer to vars, the seed and to itself.
      trial.config = Resolver(source, vars, config, seed).interpolate(config);
      Resolver stage_resolver(source, vars, trial.config, seed);
      YAML::Node stages_json(YAML::NodeType::Sequence);
      for (const auto& t : templates) {
        StageSpec s{t.name, t.kind, t.plugin, stage_resolver.interpolate(t.options), t.where};
        YAML::Node sj(YAML::NodeType::Map);
        sj["name"] = s.name;
        sj["kind"] = kind_name(s.kind);
        sj["plugin"] = s.plugin;
        sj["options"] = s.options;
        stages_json.push_back(sj);
        trial.stages.push_back(std::move(s));
      }
      YAML::Node resolved(YAML::NodeType::Map);
      resolved["config"] = trial.config;
      resolved["seed"] = seed;
      resolved["stages"] = stages_json;
      trial.resolved_json = canonical_json(resolved);
      trial.identity = sha256_hex(trial.resolved_json);
      if (!identities.insert(trial.identity).second) {
        ++exp.duplicates_dropped;
        continue;
      }
      trial.ordinal = static_cast<int64_t>(exp.trials.size());
      exp.trials.push_back(std::move(trial));
    }
  }
  return exp;
}

}  // namespace mmr
