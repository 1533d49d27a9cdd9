// The plugin ABI: the one header every plugin includes. It and the other headers of core/api/ are the whole
// public interface between the host and the plugins, and kPluginAbiVersion below is its only version number:
//   plugin_api.h   kinds, descriptor, MMR_PLUGIN, StageContext, the stage runners, Judge
//   options.h      option schema, checked options and the binder (one declaration per option)
//   chat_api.h     ChatModel: conversations in, text out (torch-free)
//   model_api.h    LanguageModel: what algorithms train (LibTorch)
//   dataset_api.h  the normalized rows and DatasetProvider
//   error.h, metrics.h
//
// A plugin is a shared library with one exported entry point, `mmr_plugin_entry`, made by MMR_PLUGIN. The entry
// returns a descriptor whose first two fields (ABI number and build id) keep their place across every ABI
// version, so the host can check them before it reads anything else. Boost gives no ABI guarantee between
// compilers or LibTorch builds, so we carry our own: a plugin is only used when both values equal the host's.
//
// Five kinds: model, algorithm, dataset, benchmark, judge. Algorithms, benchmarks and datasets run experiment
// stages (train / evaluate / prepare); models and judges are components that stages create through their
// StageContext. The torch-facing model interface lives in its own header so the host stays torch-free.
//
// Deliberately not here: anything that needs LibTorch, and any global state. Plugins never call exit().
#pragma once

#include <boost/dll/alias.hpp>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/api/error.h"
#include "core/api/metrics.h"
#include "core/api/options.h"

namespace spdlog {
class logger;
}

namespace mmr {

// Bump when any type below changes layout or meaning.
// Covers every header of core/api/ (there is no other version constant).
constexpr uint32_t kPluginAbiVersion = 6;  // 6: LanguageModel::shared_prompt_logps. 5: ChatModel::start_batch (continuous batching). 3: one API set, option binder, parameter groups, adapter switch, prompt templates
                                            // 4: ChatModel::set_image_preprocessing

// Compiler + LibTorch version of this build (set by CMake); plugin and host must agree.
#ifndef MMR_BUILD_ID
#error "MMR_BUILD_ID must be defined by the build (link the mmr_plugin_api target)"
#endif
constexpr const char* kBuildId = MMR_BUILD_ID;

enum class PluginKind : uint32_t { Model = 0, Algorithm = 1, Dataset = 2, Benchmark = 3, Judge = 4 };

inline const char* kind_name(PluginKind kind) {
  switch (kind) {
    case PluginKind::Model: return "model";
    case PluginKind::Algorithm: return "algorithm";
    case PluginKind::Dataset: return "dataset";
    case PluginKind::Benchmark: return "benchmark";
    case PluginKind::Judge: return "judge";
  }
  return "unknown";
}

// Every plugin object derives from this; the host deletes it through the virtual destructor while the
// library that holds its code is still loaded.
class Plugin {
 public:
  virtual ~Plugin() = default;
};

// Reports progress of a long loop: a bar with rate and ETA on a terminal, plain log lines otherwise.
class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void advance(int64_t n = 1) = 0;
  virtual void set_postfix(const std::string& text) = 0;  // e.g. "loss 0.6931"
  virtual void finish() = 0;
};

// What a running stage can see and do. Implemented by the host; valid for the duration of run().
class StageContext {
 public:
  virtual ~StageContext() = default;

  virtual const std::string& experiment() const = 0;
  virtual const std::string& trial_identity() const = 0;  // hash of the fully resolved configuration
  virtual const std::string& stage_name() const = 0;
  virtual uint64_t seed() const = 0;
  virtual const Options& options() const = 0;           // this stage's options (schema-checked)
  virtual const std::filesystem::path& stage_dir() const = 0;  // created; this stage's artifacts go here
  virtual spdlog::logger& log() = 0;                   // console + the trial's log file

  // Metrics: step < 0 means a final value. Committed with the stage's status, all or nothing.
  virtual void log_metric(const std::string& name, double value, int64_t step = -1) = 0;
  // Artifacts: a file or folder this stage produced (checksummed when the stage commits).
  virtual void add_artifact(const std::string& name, const std::filesystem::path& path) = 0;
  // An artifact of an earlier stage of this trial; throws ConfigError naming what exists when missing.
  virtual std::filesystem::path artifact(const std::string& stage, const std::string& name) const = 0;

  // Create a component plugin (model, dataset, judge) from an options node: either a plain name ("llava") or a
  // map with `plugin: <name>` plus options. The object keeps its library loaded for as long as it lives.
  virtual std::shared_ptr<Plugin> create(PluginKind kind, const YAML::Node& spec) = 0;

  virtual std::unique_ptr<ProgressSink> progress(const std::string& label, int64_t total) = 0;
  // True once the user asked to stop (SIGINT/SIGTERM). Long loops poll it and throw Interrupted.
  virtual bool stop_requested() const = 0;

  // The judge cache in the results store, keyed by (judge identity, exact prompt text). Written at once (not with
  // the stage's commit), so an interrupted or failed stage keeps what it paid for. Thread-safe. The defaults
  // throw: a context without a store (a test's) has no cache.
  virtual std::optional<std::string> cached_judgment(const std::string& judge, const std::string& prompt) {
    throw Error("this stage context has no judge cache");
  }
  virtual void store_judgment(const std::string& judge, const std::string& prompt, const std::string& reply) {
    throw Error("this stage context has no judge cache");
  }
};

// Thrown by a stage that stopped because stop_requested() became true.
class Interrupted : public Error {
 public:
  Interrupted() : Error("interrupted by signal") {}
};

// A plugin that runs an experiment stage: algorithms (train, sample, reference_logps, ...), benchmarks
// (evaluate) and datasets (prepare: generate/transform/validate into an artifact).
class StageRunner : public Plugin {
 public:
  virtual void run(StageContext& ctx) = 0;
};

class Algorithm : public StageRunner {};

class Dataset : public StageRunner {};

class Benchmark : public StageRunner {
 public:
  // `runner score <benchmark> key=value ...`: score existing answer/judgment files without a model or judge.
  virtual MetricList score(const Options& args) { throw Error("this benchmark cannot score files offline"); }
};

// The torch-facing model interface is declared in core/api/model_api.h (model plugins and algorithms include it).
class Model : public Plugin {};

// One request to a judge: a chat with an optional system message (and images, for a judge that sees them). `temperature` / `max_tokens` < 0 mean the
// judge's own configured values (a benchmark overrides them where the official script does, e.g. MM-Vet's
// rising retry temperature).
struct JudgeRequest {
  std::string system;
  std::string user;
  double temperature = -1;
  int64_t max_tokens = -1;
  std::vector<std::string> images;  // image files shown with the user prompt (multimodal judges); usually none
};
struct JudgeReply {
  bool ok = false;
  std::string text;   // the judge's reply (when ok)
  std::string error;  // why there is no reply (when !ok): HTTP status and body, retries exhausted, ...
};

// A judge: an OpenAI-compatible endpoint, a model loaded in-process, ... Benchmarks use it through
// core/lib/judging/judging.h (JudgeClient), which adds the cache and the counting.
class Judge : public Plugin {
 public:
  // Stable text naming what answers: plugin + endpoint/model + default temperature and max tokens, never a key.
  // Part of the cache key, so two judges that could answer differently never share cached replies.
  virtual std::string identity() const = 0;
  // Called once by the stage that created the judge, before judge(): a judge that needs components (a model
  // plugin) creates them here.
  virtual void attach(StageContext& ctx) {}
  // One reply per request, in order. Transport failures are replies with ok = false, so the others still count.
  virtual std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) = 0;
};

// ---- The descriptor and the export macro -------------------------------------------------------------------

using PluginFactory = std::unique_ptr<Plugin> (*)(const Options& options);

struct PluginDescriptor {
  // These two fields stay first in every ABI version.
  uint32_t abi_version;
  const char* build_id;
  // The rest is read only when both match the host's.
  PluginKind kind;
  const char* name;
  const char* version;
  const char* summary;
  OptionSchema (*options)();
  PluginFactory create;
};

using PluginEntry = const PluginDescriptor* ();
constexpr const char* kPluginEntrySymbol = "mmr_plugin_entry";

namespace detail {
template <typename T, typename = void>
struct has_config : std::false_type {};
template <typename T>
struct has_config<T, std::void_t<typename T::Config>> : std::true_type {};
// The plugin's option schema: from its `Config` struct's bind() when it has one, else its option_schema().
template <typename T>
OptionSchema options_of() {
  if constexpr (has_config<T>::value) return schema_of<typename T::Config>();
  else return T::option_schema();
}
template <typename T>
std::unique_ptr<Plugin> construct(const Options& options) {
  return std::make_unique<T>(options);
}
// Which kind a class implements, checked at compile time against the kind the macro names.
template <typename T>
constexpr bool implements(PluginKind kind) {
  switch (kind) {
    case PluginKind::Model: return std::is_base_of_v<Model, T>;
    case PluginKind::Algorithm: return std::is_base_of_v<Algorithm, T>;
    case PluginKind::Dataset: return std::is_base_of_v<Dataset, T>;
    case PluginKind::Benchmark: return std::is_base_of_v<Benchmark, T>;
    case PluginKind::Judge: return std::is_base_of_v<Judge, T>;
  }
  return false;
}
}  // namespace detail

}  // namespace mmr

// MMR_PLUGIN(Kind, "name", "version", Class): exports the plugin. Class must derive from mmr::<Kind>, have a
// constructor taking `const mmr::Options&`, a static `summary()` (one line), and either a nested `Config` struct
// with a bind(OptionBinder&) member (core/api/options.h; the usual way) or a static `option_schema()`.
#define MMR_PLUGIN(KIND, NAME, VERSION, CLASS)                                                             \
  static_assert(::mmr::detail::implements<CLASS>(::mmr::PluginKind::KIND),                                 \
                #CLASS " must derive from mmr::" #KIND);                                                  \
  namespace {                                                                                              \
  const ::mmr::PluginDescriptor* mmr_plugin_descriptor_() {                                                \
    static const ::mmr::PluginDescriptor descriptor{                                                       \
        ::mmr::kPluginAbiVersion, ::mmr::kBuildId,    ::mmr::PluginKind::KIND, NAME, VERSION,              \
        CLASS::summary(),         &::mmr::detail::options_of<CLASS>, &::mmr::detail::construct<CLASS>};                \
    return &descriptor;                                                                                    \
  }                                                                                                        \
  }                                                                                                        \
  BOOST_DLL_ALIAS(mmr_plugin_descriptor_, mmr_plugin_entry)
