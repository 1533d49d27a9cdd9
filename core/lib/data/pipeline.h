// The loading pipeline every dataset plugin shares, its options, and the DatasetProvider classes built on it
// (PipelineDataset; FileDataset for the plugins that read row files).
//
//   read records (records.h) -> parse + validate each row (rows.h) -> rewrite its image paths (the image_folder
//   transforms) and check its image files -> the other transforms in order (transforms.h)
//   -> rows (to an algorithm) or rows.jsonl (prepare stage)
//
// Bad rows: every one is reported with file:row, a reason code and a message. on_bad_row: fail (default) throws
// DataError at the first one ("data/prefs.jsonl:12: empty_response: field 'chosen': the reply is empty");
// on_bad_row: skip drops it, counts it under skipped/<reason>, logs it and lists it in the bad_rows.jsonl
// artifact. Every check, image files included, happens before the transforms, so fraction and flip_fraction work
// on valid rows only and their counts are exact for the rows that are kept.
//
// Metrics (one row each in the results store, final values):
//   rows_read      records read from the files          rows_kept     rows handed on / written
//   rows_skipped   bad rows dropped (on_bad_row: skip)   skipped/<reason>  per reason (see rows.h)
//   filtered, dropped_by_fraction, dropped_by_max_rows, flipped, images_remapped,
//   groups_read, pairs_built, groups_skipped/small_spread, groups_skipped/too_few_candidates  (when they apply)
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/api/dataset_api.h"
#include "core/api/options.h"
#include "core/lib/data/rows.h"
#include "core/lib/data/transforms.h"

namespace mmr::data {

struct BadRowReport {
  std::string file;
  int64_t row = 0;
  std::string reason;
  std::string message;
  std::string text() const { return file + ":" + std::to_string(row) + ": " + reason + ": " + message; }
};

struct LoadResult {
  RowSet rows;
  int64_t rows_read = 0;
  std::vector<BadRowReport> bad_rows;
  Counters counts;  // transforms' counts and skipped/<reason>
};

// What the pipeline does, read from the options every dataset plugin shares. Those options are declared once, in
// bind_files and bind_rows (core/api/options.h), which also hold their defaults and fill these fields; a plugin's
// Config::bind calls them, so every plugin's schema lists them.
struct PipelineOptions {
  std::vector<std::string> files;
  ParseOptions parse;
  bool skip_bad_rows = false;  // on_bad_row: skip
  bool check_images{};
  std::optional<uint64_t> seed;  // the dataset's `seed` option
  std::vector<Transform> transforms;
  int64_t log_bad_rows{};  // how many skipped rows to log one by one (all are in the report)

  // `file` and `image_folder`: the row files (left out by a dataset that makes its own files).
  void bind_files(OptionBinder& o);
  // `on_bad_row`, `check_images`, `image_token`, `seed`, `transforms`, `log_bad_rows`. A plugin whose questions
  // carry no "<image>" passes "add" as the default of image_token.
  void bind_rows(OptionBinder& o, const std::string& image_token_default = "require");

  // Both, as llava_json and preference declare them, read from (unchecked) options: for tests.
  static PipelineOptions from(const Options& options);
};

using RowParser = void (*)(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out);

// Runs the whole pipeline; `input` is the kind of rows the files hold (parsed with rows.h's parser for that kind,
// or with `parser`).
LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx);
LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx, RowParser parser);

// Records the counts as metrics through the context.
void record_metrics(const LoadResult& result, DataContext& ctx);

// Writes the rows as JSONL (one normalized row per line), atomically (core/lib/util/atomic_file.h).
void write_rows(const RowSet& rows, const std::filesystem::path& path);
void write_bad_rows(const std::vector<BadRowReport>& bad, const std::filesystem::path& path);

// Checks that an image file exists, can be read and starts like an image the decoder reads (JPEG, PNG, GIF, BMP,
// WebP: core/lib/image/format.h decides for both; a TIFF or unknown file is a bad row). Only the first bytes are
// read: a file of the right format but corrupt inside still fails when it is decoded.
// Returns "" when fine, else the reason code (missing_image / unreadable_image) and fills `message`.
std::string check_image_file(const std::string& path, std::string& message);

// A DatasetProvider whose rows come out of the pipeline; a subclass says how it loads them. The three row
// methods load afresh, record the counts and hand on the rows of the one kind the dataset provides.
class PipelineDataset : public DatasetProvider {
 public:
  explicit PipelineDataset(RowKind output) : output_(output) {}

  std::vector<RowKind> row_kinds() const override { return {output_}; }
  std::vector<ConversationRow> conversation_rows(DataContext& ctx) override;
  std::vector<PreferenceRow> preference_rows(DataContext& ctx) override;
  std::vector<ScoredCandidatesRow> scored_candidates_rows(DataContext& ctx) override;

 protected:
  // Loads the rows an algorithm gets (the counts are recorded by the caller).
  virtual LoadResult load_rows(DataContext& ctx) = 0;
  // The prepare stage's output: rows.jsonl (artifact "rows") and, when rows were skipped, bad_rows.jsonl
  // (artifact "bad_rows") in the stage folder.
  static void write_artifacts(const LoadResult& result, StageContext& ctx);

 private:
  RowSet rows_of(RowKind kind, DataContext& ctx);
  RowKind output_;
};

// A dataset plugin backed by row files. Subclasses give the row kind of their files.
class FileDataset : public PipelineDataset {
 public:
  // The options of a file dataset (llava_json, preference; a subclass with more declares its own Config).
  struct Config {
    PipelineOptions pipeline;
    void bind(OptionBinder& o) {
      pipeline.bind_files(o);
      pipeline.bind_rows(o);
    }
  };
  FileDataset(PipelineOptions options, RowKind input);

  // prepare: load, validate, transform; writes the artifacts (see write_artifacts); records the counts as metrics.
  void run(StageContext& ctx) override;

  LoadResult load(DataContext& ctx) const;

 protected:
  LoadResult load_rows(DataContext& ctx) override { return load(ctx); }

 private:
  PipelineOptions opt_;
  RowKind input_;
};

}  // namespace mmr::data
