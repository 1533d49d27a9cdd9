// What every file-scoring benchmark plugin (pope, mm_vet, llava_bench, mt_bench) does the same way: check
// `runner score` arguments against the option schema, read list options, and record a scoring stage's metrics and
// artifacts. Header-only (this folder has no CMakeLists.txt, so it is not a plugin); no statics, so nothing is
// shared between plugin libraries at run time.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/strings.h"

namespace mmr::benchmarks {

// An option with a value: present, not null, and not an empty string (the default of a path option nobody gave).
inline bool given(const Options& o, const std::string& key) {
  if (!o.has(key)) return false;
  const YAML::Node v = o.node()[key];
  return !(v.IsScalar() && v.Scalar().empty());
}
inline bool given(const YAML::Node& v) { return v.IsDefined() && !v.IsNull(); }

// Unknown keys and missing required ones are ConfigErrors naming the key and listing the known ones, worded as
// the host's check_options words them. Stage options were checked by the host already; this catches
// `runner score` arguments, which arrive unchecked, and options a stage needs only on one of its paths.
inline void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required,
                       const char* usage_line) {
  const bool command_line = o.source().rfind("runner score", 0) == 0;
  const std::string usage = command_line ? std::string("\nusage: ") + usage_line : "";
  std::vector<std::string> known;
  for (const auto& spec : schema) known.push_back(spec.name);
  const std::string known_text = fmt::format("{}", fmt::join(known, ", "));
  if (o.node().IsMap()) {
    for (const auto& kv : o.node()) {
      const std::string key = kv.first.Scalar();
      if (std::find(known.begin(), known.end(), key) == known.end())
        throw ConfigError(fmt::format("{}unknown option '{}'; known options: {}{}", o.where(kv.second), key,
                                      known_text, usage));
    }
  }
  for (const auto& key : required) {
    if (given(o, key)) continue;
    std::string help;
    for (const auto& spec : schema)
      if (spec.name == key) help = spec.help;
    throw ConfigError(fmt::format("{}missing required option '{}' ({}); known options: {}{}",
                                  o.where(o.node()), key, help, known_text, usage));
  }
}

// A list option: a YAML list, or one string with comma-separated items (the command line's form). Empty when
// the option is not given.
inline std::vector<std::string> list_option(const Options& o, const std::string& key) {
  if (!o.has(key)) return {};
  const YAML::Node v = o.node()[key];
  std::vector<std::string> items;
  if (v.IsSequence()) {
    for (const auto& item : v) {
      if (!item.IsScalar()) throw ConfigError(o.where(item) + "option '" + key + "': expected a list of strings");
      items.push_back(item.Scalar());
    }
  } else if (v.IsScalar()) {
    for (std::string_view item : python_split(v.Scalar(), ',')) items.emplace_back(item);
  } else {
    throw ConfigError(o.where(v) + "option '" + key + "': expected a string, a comma-separated list or a YAML list");
  }
  for (const auto& item : items)
    if (item.empty())
      throw ConfigError(fmt::format("{}option '{}': empty item in '{}'", o.where(v), key, v.IsScalar() ? v.Scalar() : "the list"));
  return items;
}

// Declares a list option (a YAML list, or comma-separated on the command line; type "any", or "paths" for files
// and folders, read from the experiment file's folder) and reads it into `items`.
inline void bind_list(OptionBinder& o, const std::string& name, std::vector<std::string>* items,
                      const std::string& help, const char* type = "any") {
  YAML::Node node;
  o.bind(name, &node, YAML::Node(), help, type);
  if (o.reading()) *items = list_option(o.options(), name);
}

// Writes the metrics to scores.json in the stage folder (artifact "scores"), without logging them.
inline void write_scores(StageContext& ctx, const MetricList& metrics) {
  nlohmann::ordered_json scores = nlohmann::ordered_json::object();
  for (const auto& m : metrics) scores[m.name] = m.value;
  const std::filesystem::path path = ctx.stage_dir() / "scores.json";
  write_file_atomic(path, scores.dump(2) + "\n");
  ctx.add_artifact("scores", path);
}

// An evaluation's metrics: logged to the store and written to scores.json.
inline void record_metrics(StageContext& ctx, const MetricList& metrics) {
  for (const auto& m : metrics) ctx.log_metric(m.name, m.value);
  write_scores(ctx, metrics);
}

// Copies the scored file(s) into the stage folder as artifact `artifact` (one file: the copy; several: a folder
// <artifact>/ of copies), so the scores stay beside what they score.
inline void copy_scored_files(StageContext& ctx, const std::string& artifact, const std::vector<std::string>& files) {
  namespace fs = std::filesystem;
  fs::path folder = ctx.stage_dir();
  if (files.size() > 1) {
    folder /= artifact;
    fs::remove_all(folder);  // an earlier attempt's copies
    fs::create_directories(folder);
  }
  std::set<std::string> names;
  for (const auto& file : files) {
    const fs::path copy = folder / fs::path(file).filename();
    if (!names.insert(copy.filename().string()).second)
      throw ConfigError("two scored files are named '" + copy.filename().string() + "'; give them distinct names");
    if (fs::exists(copy) && fs::equivalent(copy, file))
      throw ConfigError("'" + file + "' is this stage's own copy of a scored file; point the stage at the original");
    fs::copy_file(file, copy, fs::copy_options::overwrite_existing);
  }
  ctx.add_artifact(artifact, files.size() == 1 ? folder / fs::path(files[0]).filename() : folder);
}

// A scoring stage's record: every metric, the scored file(s) (copy_scored_files) and scores.json.
inline void record(StageContext& ctx, const MetricList& metrics, const std::string& artifact,
                   const std::vector<std::string>& files) {
  for (const auto& m : metrics) ctx.log_metric(m.name, m.value);
  copy_scored_files(ctx, artifact, files);
  write_scores(ctx, metrics);
}

}  // namespace mmr::benchmarks
