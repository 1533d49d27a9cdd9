// The dataset ABI: the normalized rows that algorithms consume, and the interface a dataset plugin implements to
// hand them over. Torch-free; included by dataset plugins and by the algorithms that read their rows.
//
// Three row kinds, whatever the file on disk looked like:
//   ConversationRow      LLaVA instruction rows: id, images, [{from: human|gpt, value}]        (SFT)
//   PreferenceRow        a prompt with a chosen and a rejected reply, optional reference log-probs (DPO)
//   ScoredCandidatesRow  one question with several responses, each scored on the five attributes
//                        (rejection sampling, attribute-conditioned SFT, the paper's pair construction)
// Every row keeps where it came from (file + row number) so that a later error can point back at the data.
//
// A dataset plugin derives from DatasetProvider (itself an mmr::Dataset, so the registry loads it as the
// dataset kind). Two ways to use one:
//   - as a stage (`dataset: preference` in the YAML): run() = "prepare": load, validate, transform, write the
//     normalized rows as the JSONL artifact `rows` and record counts as metrics;
//   - as a component of an algorithm stage: the algorithm creates it with StageContext::create(Dataset, node),
//     casts it with dataset_provider() and calls preference_rows() (or the row kind it trains on).
// Both paths run the same loading code, so an algorithm sees exactly the rows a prepare stage would write.
//
// Deliberately not here: file formats, parsing, transforms (core/lib/data/, library mmr_data), and anything that
// needs LibTorch (tokenizing rows is the model plugin's job).
#pragma once

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"

namespace mmr {

// One conversation turn. `from` is "human", "gpt" or "system" (LLaVA's names; TRL's "user"/"assistant" are
// normalized to these). Image placeholders stay in the text as "<image>".
struct Turn {
  std::string from;
  std::string value;
};

// Where a row came from: the file as given in the options and the 1-based row number (the line in a JSONL file,
// the element index in a JSON array). Errors and the bad-row report print it as "file:row".
struct RowOrigin {
  std::string file;
  int64_t row = 0;
};

// LLaVA instruction row.
struct ConversationRow {
  std::string id;
  std::vector<std::string> images;  // resolved against the image folder (absolute or relative to the cwd)
  std::vector<Turn> turns;
  RowOrigin origin;
  nlohmann::json extra = nlohmann::json::object();  // fields of the source row this struct has no place for
};

// One side of a preference pair. `text` is the reply the pair compares (the last assistant turn); when the row
// gave the side as a whole conversation (a list of turns), `conversation` holds all of it, prompt included.
struct Reply {
  std::string text;
  std::vector<Turn> conversation;  // empty unless the row gave a list
};

// A preference pair. Reference log-probs (DESIGN §6: precomputed once with the base model) keep the seed's
// names: `win` = chosen, `rej` = rejected; sums over response tokens, means, and the per-token values.
// flip_fraction swaps chosen/rejected *and* every win/rej field (these and the win_*/rej_* fields in `extra`).
struct PreferenceRow {
  std::string id;
  std::vector<std::string> images;
  std::vector<Turn> prompt;  // the turns before the reply (usually one human turn)
  Reply chosen;
  Reply rejected;
  std::optional<double> ref_win_logp, ref_rej_logp;
  std::optional<double> ref_win_avg_logp, ref_rej_avg_logp;
  std::vector<double> ref_win_per_token_logp, ref_rej_per_token_logp;
  bool flipped = false;  // true when flip_fraction swapped this pair (data-noising ablations)
  RowOrigin origin;
  nlohmann::json extra = nlohmann::json::object();
};

// The five attributes the paper's annotator scores (0-4), in this order. Returned by value on purpose: a
// function-local static in an inline function of this header becomes a GNU "unique" symbol shared by every
// plugin in the process (RTLD_LOCAL/DEEPBIND notwithstanding), and the first plugin to be unloaded destroys it
// under the others. Keep statics out of the inline code of the ABI headers.
inline std::vector<std::string> attribute_names() {
  return {"Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity"};
}

struct Candidate {
  std::string response;
  std::map<std::string, double> scores;  // attribute -> score (0-4); all five present after validation
};

// One image-question with several scored responses.
struct ScoredCandidatesRow {
  std::string id;
  std::vector<std::string> images;  // zero or one image
  std::string question;
  std::vector<Candidate> candidates;
  RowOrigin origin;
  nlohmann::json extra = nlohmann::json::object();
};

enum class RowKind : uint32_t { Conversation = 0, Preference = 1, ScoredCandidates = 2 };

inline const char* row_kind_name(RowKind kind) {
  switch (kind) {
    case RowKind::Conversation: return "conversation";
    case RowKind::Preference: return "preference";
    case RowKind::ScoredCandidates: return "scored_candidates";
  }
  return "unknown";
}

// What a caller gives the loading code: the seed for transforms that name none, where the counts go, and a
// logger. for_stage() wires it to a running stage (metrics "<prefix>rows_read", ... land in the results store).
struct DataContext {
  uint64_t seed = 0;
  std::function<void(const std::string& name, double value)> metric;  // may be empty
  spdlog::logger* log = nullptr;                                      // may be null
  std::function<bool()> stop_requested;                               // may be empty

  void record(const std::string& name, double value) const {
    if (metric) metric(name, value);
  }
  static DataContext for_stage(StageContext& ctx, const std::string& metric_prefix = "") {
    DataContext d;
    d.seed = ctx.seed();
    StageContext* c = &ctx;
    d.metric = [c, metric_prefix](const std::string& name, double value) { c->log_metric(metric_prefix + name, value); };
    d.log = &ctx.log();
    d.stop_requested = [c] { return c->stop_requested(); };
    return d;
  }
};

// The interface algorithms call. A dataset that does not provide a row kind throws ConfigError saying which
// kinds it does provide. Each call loads afresh (rows are not cached), records its counts through the context,
// and throws DataError on a bad row when on_bad_row is "fail".
class DatasetProvider : public Dataset {
 public:
  virtual std::vector<RowKind> row_kinds() const = 0;

  virtual std::vector<ConversationRow> conversation_rows(DataContext& ctx) { not_provided(RowKind::Conversation); }
  virtual std::vector<PreferenceRow> preference_rows(DataContext& ctx) { not_provided(RowKind::Preference); }
  virtual std::vector<ScoredCandidatesRow> scored_candidates_rows(DataContext& ctx) {
    not_provided(RowKind::ScoredCandidates);
  }

  bool provides(RowKind kind) const {
    for (RowKind k : row_kinds())
      if (k == kind) return true;
    return false;
  }

 protected:
  [[noreturn]] void not_provided(RowKind asked) const {
    std::string have;
    for (RowKind k : row_kinds()) have += std::string(have.empty() ? "" : ", ") + row_kind_name(k);
    throw ConfigError(std::string("this dataset provides ") + (have.empty() ? "no" : have) + " rows, not " +
                      row_kind_name(asked) + " rows");
  }
};

// The provider behind a plugin object created with StageContext::create(PluginKind::Dataset, ...).
inline DatasetProvider& dataset_provider(Plugin& plugin, const std::string& what = "dataset") {
  auto* p = dynamic_cast<DatasetProvider*>(&plugin);
  if (!p) throw ConfigError(what + ": this dataset plugin only runs as a stage; it provides no rows to algorithms");
  return *p;
}

}  // namespace mmr
