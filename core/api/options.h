// Plugin options: the schema the host checks, the checked values a plugin reads, and the binder that makes both
// from one declaration per option.
//
// A plugin keeps its options in a struct with a `bind` member; each option is one line there:
//
//   struct Config {
//     double beta;
//     std::string loss;
//     void bind(mmr::OptionBinder& o) {
//       o.bind("beta", &beta, 0.1, "the KL strength");
//       o.one_of("loss", &loss, "sigmoid", {"sigmoid", "ipo"}, "the preference loss");
//     }
//   };
//
// schema_of<Config>() runs `bind` in declaring mode (the schema `runner plugins` prints and the registry checks
// options against); read_options<Config>(options) runs it in reading mode on options the registry already
// checked and filled with defaults. MMR_PLUGIN finds `Class::Config` by itself. The name, the type (from the
// field), the default and the help exist once, so they cannot drift apart.
#pragma once

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "core/api/error.h"

namespace mmr {

// One option a plugin accepts. `type` is one of: int, float, bool, string, list, map, any; path (a file or folder
// the plugin reads: it must exist when the experiment is planned), paths (a path or a list of them), output (a file
// or folder the plugin writes); model, judge, dataset (a plugin node: a plugin name, or a map {plugin: NAME, ...}
// checked against that plugin's options; a dataset may also be a row file). Relative paths in an experiment are
// read from its file's folder.
// `default_yaml` is the default written as YAML ("0.1", "false", "[]"); empty with `required` = no default.
struct OptionSpec {
  std::string name;
  std::string type;
  std::string default_yaml;
  std::string help;
  bool required = false;
};
using OptionSchema = std::vector<OptionSpec>;

// A plugin's options: the YAML node from the experiment file, already checked against the schema and with
// defaults filled in. Typed getters throw ConfigError naming file:line:column, the key, expected and found.
class Options {
 public:
  Options() = default;
  Options(YAML::Node node, std::string source) : node_(std::move(node)), source_(std::move(source)) {}

  const YAML::Node& node() const { return node_; }
  const std::string& source() const { return source_; }
  bool has(const std::string& key) const { return node_.IsMap() && node_[key] && !node_[key].IsNull(); }

  template <typename T>
  T get(const std::string& key) const {
    YAML::Node value = node_.IsMap() ? node_[key] : YAML::Node();
    if (!value || value.IsNull()) throw ConfigError(where(node_) + "missing option '" + key + "'");
    try {
      return value.as<T>();
    } catch (const YAML::Exception&) {
      throw ConfigError(where(value) + "option '" + key + "': expected " + type_name<T>() + ", found '" +
                        (value.IsScalar() ? value.Scalar() : std::string(value.IsMap() ? "a map" : "a list")) + "'");
    }
  }
  template <typename T>
  T get(const std::string& key, const T& fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }

  // "file:line:column: " of a node, or "file: " when the node has no position (a default, an override).
  std::string where(const YAML::Node& node) const {
    const YAML::Mark mark = node.Mark();
    if (mark.line < 0 || (mark.line == 0 && mark.column == 0 && mark.pos == 0)) return source_ + ": ";
    return source_ + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1) + ": ";
  }
  // "file:line:column: " of option `key` (of the whole map when the key is absent).
  std::string where(const std::string& key) const {
    return where(has(key) ? node_[key] : node_);
  }

 private:
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "a boolean (true/false)";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else return "a value of another type";
  }
  YAML::Node node_;
  std::string source_;
};

// Declares (schema) or reads (values) a plugin's options, one call per option. See the top of this file.
class OptionBinder {
 public:
  explicit OptionBinder() = default;                                       // declaring: collects the schema
  explicit OptionBinder(const Options& options) : options_(&options) {}    // reading: fills the fields

  bool reading() const { return options_ != nullptr; }
  const Options& options() const { return *options_; }  // reading only
  const OptionSchema& schema() const { return schema_; }

  // An option with a default. The type comes from the field: bool, integers (int), floating point (float),
  // std::string (string; pass type "path" for a file or folder), std::vector<std::string> (list), YAML::Node
  // (any: a map, a list or a name; an option not given reads as a Null node).
  template <typename T, typename D>
  void bind(const std::string& name, T* field, const D& default_value, const std::string& help,
            const char* type = nullptr) {
    if (reading()) {
      read(name, field);
    } else {
      *field = static_cast<T>(default_value);
      // An empty string or a Null node is "no default" to the schema (`runner plugins` shows "-"); the field keeps
      // it when the option is not given.
      std::string text = default_text(*field);
      if constexpr (std::is_same_v<T, std::string>) text = field->empty() ? "" : text;
      if constexpr (std::is_same_v<T, YAML::Node>) text = !field->IsDefined() || field->IsNull() ? "" : text;
      schema_.push_back({name, type ? type : type_of<T>(), text, help, false});
    }
  }

  // An option the user must give.
  template <typename T>
  void required(const std::string& name, T* field, const std::string& help, const char* type = nullptr) {
    if (reading()) read(name, field);
    else schema_.push_back({name, type ? type : type_of<T>(), "", help, true});
  }

  // An option with no default that may be left out (`runner plugins` shows its default as "-"); the field keeps
  // its value when the option is not given (a YAML::Node field reads as a Null node).
  template <typename T>
  void optional(const std::string& name, T* field, const std::string& help, const char* type = nullptr) {
    if (reading()) read(name, field);
    else schema_.push_back({name, type ? type : type_of<T>(), "", help, false});
  }

  // A string option with a fixed set of values; the help lists them.
  void one_of(const std::string& name, std::string* field, const std::string& default_value,
              const std::vector<std::string>& values, const std::string& help) {
    bind(name, field, default_value, help + " (" + fmt::format("{}", fmt::join(values, " | ")) + ")");
    if (reading() && std::find(values.begin(), values.end(), *field) == values.end())
      fail(name, fmt::format("expected one of {}, found '{}'", fmt::join(values, ", "), *field));
  }

  // A check on values already read: when reading and `ok` is false, throws ConfigError at option `name`.
  void check(bool ok, const std::string& name, const std::string& message) {
    if (reading() && !ok) fail(name, message);
  }
  [[noreturn]] void fail(const std::string& name, const std::string& message) const {
    throw ConfigError(options_->where(name) + name + ": " + message);
  }

 private:
  template <typename T>
  void read(const std::string& name, T* field) {
    if constexpr (std::is_same_v<T, YAML::Node>) {
      *field = options_->has(name) ? options_->node()[name] : YAML::Node();
    } else {
      if (options_->has(name)) *field = options_->get<T>(name);
    }
  }
  template <typename T>
  static const char* type_of() {
    if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_integral_v<T>) return "int";
    else if constexpr (std::is_floating_point_v<T>) return "float";
    else if constexpr (std::is_same_v<T, std::string>) return "string";
    else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "list";
    else if constexpr (std::is_same_v<T, YAML::Node>) return "any";
    else static_assert(sizeof(T) == 0, "OptionBinder: unsupported option type");
  }
  template <typename T>
  static std::string default_text(const T& v) {
    if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
    else if constexpr (std::is_integral_v<T>) return std::to_string(v);
    else if constexpr (std::is_floating_point_v<T>) {
      std::string s = fmt::format("{}", v);
      if (std::isfinite(v) && s.find_first_of(".en") == std::string::npos) s += ".0";  // stays a float in YAML
      return s;
    } else if constexpr (std::is_same_v<T, YAML::Node>) {
      if (!v.IsDefined() || v.IsNull()) return "~";
      YAML::Emitter e;
      e << YAML::Flow << v;
      return e.c_str();
    } else {
      YAML::Emitter e;
      e << YAML::Flow << v;
      return e.c_str();
    }
  }

  const Options* options_ = nullptr;
  OptionSchema schema_;
};

// The schema of an options struct (declaring mode) and the struct read from checked options (reading mode).
template <typename Config>
OptionSchema schema_of() {
  Config c;
  OptionBinder b;
  c.bind(b);
  return b.schema();
}
template <typename Config>
Config read_options(const Options& options) {
  Config c;
  OptionBinder declare;
  c.bind(declare);  // every field gets its default first
  OptionBinder b(options);
  c.bind(b);
  return c;
}

}  // namespace mmr
