// The loading pipeline every file-backed dataset plugin shares, and FileDataset, the DatasetProvider built on it.
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
#include <string>
#include <vector>

#include "core/lib/data/rows.h"
#include "core/lib/data/transforms.h"
#include "core/api/dataset_api.h"

namespace mmr::data {

// Options every file dataset accepts (merged into each plugin's schema).
OptionSchema common_option_schema();

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

struct PipelineOptions {
  std::vector<std::string> files;
  ParseOptions parse;
  bool skip_bad_rows = false;  // on_bad_row: skip
  bool check_images = true;
  std::optional<uint64_t> seed;  // the dataset's `seed` option
  std::vector<Transform> transforms;
  int64_t log_bad_rows = 20;  // how many skipped rows to log one by one (all are in the report)

  static PipelineOptions from(const Options& options);
};

using RowParser = void (*)(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out);

// Runs the whole pipeline; `input` is the kind of rows the files hold (parsed with rows.h's parser for that kind,
// or with `parser`).
LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx);
LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx, RowParser parser);

// Records the counts as metrics through the context.
void record_metrics(const LoadResult& result, DataContext& ctx);

// Writes the rows as JSONL (one normalized row per line), atomically (temp file + rename).
void write_rows(const RowSet& rows, const std::filesystem::path& path);
void write_bad_rows(const std::vector<BadRowReport>& bad, const std::filesystem::path& path);

// Checks that an image file exists, can be read and starts like an image (PNG, JPEG, GIF, BMP, WebP, TIFF).
// Returns "" when fine, else the reason code (missing_image / unreadable_image) and fills `message`.
std::string check_image_file(const std::string& path, std::string& message);

// A dataset plugin backed by row files. Subclasses give the row kind of their files and a parser.
class FileDataset : public DatasetProvider {
 public:
  using Parser = RowParser;
  FileDataset(const Options& options, RowKind input, Parser parser);

  std::vector<RowKind> row_kinds() const override { return {output_}; }
  std::vector<ConversationRow> conversation_rows(DataContext& ctx) override;
  std::vector<PreferenceRow> preference_rows(DataContext& ctx) override;
  std::vector<ScoredCandidatesRow> scored_candidates_rows(DataContext& ctx) override;

  // prepare: load, validate, transform; writes rows.jsonl (artifact "rows") and, when rows were skipped,
  // bad_rows.jsonl (artifact "bad_rows"); records the counts as metrics.
  void run(StageContext& ctx) override;

  LoadResult load(DataContext& ctx) const;

 private:
  PipelineOptions opt_;
  RowKind input_, output_;
  Parser parser_;
};

// Parsers for FileDataset (rows.h's functions appending to a RowSet).
void parse_into_conversations(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out);
void parse_into_preferences(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out);
void parse_into_scored(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out);

}  // namespace mmr::data
