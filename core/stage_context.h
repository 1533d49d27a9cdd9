// The StageContext the runner gives a stage's plugin: the trial's identity and seed, the stage's options and
// folder, metrics and artifacts collected for the stage's commit, plugins created through the registry, the
// judge cache in the results store. Used by the runner (core/runner.cpp) and by each process of a stage that
// runs on several ranks (core/ranks.cpp).
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/log.h"
#include "core/registry.h"
#include "core/runner.h"
#include "core/spec.h"
#include "core/store.h"

namespace mmr {

namespace fs = std::filesystem;

class StageContextImpl : public StageContext {
 public:
  StageContextImpl(const Experiment& exp, const Trial& trial, const StageSpec& stage, Options options,
                   fs::path dir, std::shared_ptr<spdlog::logger> log, const Registry& registry,
                   const std::map<std::string, fs::path>& artifacts, Store& store)
      : exp_(exp), trial_(trial), stage_(stage), options_(std::move(options)), dir_(std::move(dir)),
        log_(std::move(log)), registry_(registry), earlier_(artifacts), store_(store) {}

  const std::string& experiment() const override { return exp_.name; }
  const std::string& trial_identity() const override { return trial_.identity; }
  const std::string& stage_name() const override { return stage_.name; }
  uint64_t seed() const override { return trial_.seed; }
  const Options& options() const override { return options_; }
  const fs::path& stage_dir() const override { return dir_; }
  spdlog::logger& log() override { return *log_; }

  void log_metric(const std::string& name, double value, int64_t step) override {
    metrics_.push_back({name, step, value});
  }
  void add_artifact(const std::string& name, const fs::path& path) override {
    const fs::path p = path.is_absolute() ? path : dir_ / path;
    for (auto& a : artifacts_)
      if (a.first == name) {
        a.second = p;
        return;
      }
    artifacts_.emplace_back(name, p);
  }
  fs::path artifact(const std::string& stage, const std::string& name) const override {
    auto it = earlier_.find(stage + "/" + name);
    if (it != earlier_.end()) return it->second;
    std::vector<std::string> have;
    for (const auto& [k, v] : earlier_) have.push_back(k);
    throw ConfigError(fmt::format("stage '{}': no artifact '{}/{}'; earlier stages produced: {}", stage_.name, stage,
                                  name, have.empty() ? "(none)" : fmt::format("{}", fmt::join(have, ", "))));
  }
  std::shared_ptr<Plugin> create(PluginKind kind, const YAML::Node& spec) override {
    if (spec && spec.IsScalar()) return registry_.create(kind, spec.Scalar(), YAML::Node(), exp_.source.string());
    if (!spec || !spec.IsMap() || !spec["plugin"] || !spec["plugin"].IsScalar())
      throw ConfigError(fmt::format("{}stage '{}': expected a {} plugin name, or a map with 'plugin: <name>' and its "
                                    "options", yaml_where(spec, exp_.source.string()), stage_.name, kind_name(kind)));
    YAML::Node opts(YAML::NodeType::Map);
    for (const auto& kv : spec)
      if (kv.first.Scalar() != "plugin") opts[kv.first.Scalar()] = kv.second;
    return registry_.create(kind, spec["plugin"].Scalar(), opts, exp_.source.string());
  }
  std::unique_ptr<ProgressSink> progress(const std::string& label, int64_t total) override {
    return std::make_unique<Progress>(label, total, log_);
  }
  bool stop_requested() const override { return stop_flag().load(); }
  // One SQLite connection serves the whole runner; judges may call from worker threads.
  std::optional<std::string> cached_judgment(const std::string& judge, const std::string& prompt) override {
    std::lock_guard<std::mutex> lock(store_mu_);
    return store_.cached_judgment(judge, prompt);
  }
  void store_judgment(const std::string& judge, const std::string& prompt, const std::string& reply) override {
    std::lock_guard<std::mutex> lock(store_mu_);
    store_.store_judgment(judge, prompt, reply);
  }

  std::vector<MetricRow> metrics_;
  std::vector<std::pair<std::string, fs::path>> artifacts_;

 private:
  const Experiment& exp_;
  const Trial& trial_;
  const StageSpec& stage_;
  Options options_;
  fs::path dir_;
  std::shared_ptr<spdlog::logger> log_;
  const Registry& registry_;
  const std::map<std::string, fs::path>& earlier_;
  Store& store_;
  std::mutex store_mu_;
};

// The plugin object as the stage runner its kind says it is.
inline StageRunner* as_stage_runner(PluginKind kind, Plugin* p) {
  // The kind was checked against the class at compile time by MMR_PLUGIN, so these downcasts are exact.
  switch (kind) {
    case PluginKind::Algorithm: return static_cast<Algorithm*>(p);
    case PluginKind::Benchmark: return static_cast<Benchmark*>(p);
    case PluginKind::Dataset: return static_cast<Dataset*>(p);
    default: throw InternalError("a stage must be run by an algorithm, benchmark or dataset plugin");
  }
}

}  // namespace mmr
