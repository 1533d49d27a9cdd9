#include "core/lib/data/pipeline.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/lib/data/records.h"
#include "core/lib/image/format.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/kill_point.h"

namespace mmr::data {
namespace fs = std::filesystem;

// ---- options ---------------------------------------------------------------------------------------------------

namespace {

// An option bound to a local: its default while declaring (or when unchecked options lack it), else its value.
// The default is written once, in the call.
template <typename T, typename D>
T bound(OptionBinder& o, const std::string& name, const D& fallback, const std::string& help,
        const char* type = nullptr) {
  T value = static_cast<T>(fallback);
  o.bind(name, &value, fallback, help, type);
  return value;
}

// `file`: one path, or a non-empty list of them.
std::vector<std::string> file_list(const OptionBinder& o, const YAML::Node& file) {
  if (file.IsScalar()) return {file.Scalar()};
  if (!file.IsSequence() || file.size() == 0) o.fail("file", "expected a path or a non-empty list of paths");
  std::vector<std::string> files;
  for (const auto& f : file) {
    if (!f.IsScalar()) o.fail("file", std::string("expected a path, found a ") + (f.IsMap() ? "map" : "list"));
    files.push_back(f.Scalar());
  }
  return files;
}

ImageTokenPolicy image_token_policy(OptionBinder& o, const std::string& token) {
  o.check(token == "require" || token == "add" || token == "ignore", "image_token",
          "expected require, add or ignore, found '" + token + "'");
  if (token == "add") return ImageTokenPolicy::Add;
  if (token == "ignore") return ImageTokenPolicy::Ignore;
  return ImageTokenPolicy::Require;
}

// `seed`: no default (the trial seed is used then), so it is a node that may be null.
std::optional<uint64_t> seed_option(OptionBinder& o, const YAML::Node& seed) {
  if (!o.reading() || !seed.IsDefined() || seed.IsNull()) return std::nullopt;
  const auto s = o.options().get<int64_t>("seed");
  o.check(s >= 0, "seed", "expected a non-negative integer");
  return static_cast<uint64_t>(s);
}

}  // namespace

void PipelineOptions::bind_files(OptionBinder& o) {
  YAML::Node file;
  o.required("file", &file, "the row file (JSON array or JSONL), or a list of them read in order", "paths");
  const auto folder =
      bound<std::string>(o, "image_folder", "", "folder that relative image paths are joined to", "path");
  if (!o.reading()) return;
  files = file_list(o, file);
  parse.image_folder = folder;
}

void PipelineOptions::bind_rows(OptionBinder& o, const std::string& image_token_default) {
  const auto policy = bound<std::string>(
      o, "on_bad_row", "fail", "fail: stop at the first bad row (file:row and reason); skip: drop and count it");
  o.check(policy == "fail" || policy == "skip", "on_bad_row", "expected fail or skip, found '" + policy + "'");
  skip_bad_rows = policy == "skip";
  o.bind("check_images", &check_images, true,
         "check that every image file of a kept row exists and reads as an image");
  parse.image_token = image_token_policy(
      o, bound<std::string>(o, "image_token", image_token_default,
                            "an image without \"<image>\" in the text: require (bad row), add (prepend "
                            "\"<image>\\n\"), ignore"));
  YAML::Node seed_node;
  o.optional("seed", &seed_node, "seed of the transforms that give none (default: the trial seed)", "int");
  seed = seed_option(o, seed_node);
  const auto list = bound<YAML::Node>(o, "transforms", YAML::Node(YAML::NodeType::Sequence),
                                      "transforms applied in order: fraction, flip_fraction, shuffle, max_rows, "
                                      "filter, image_folder, build_pairs (see plugins/datasets/README.md)",
                                      "list");
  if (o.reading()) transforms = parse_transforms(list, o.options().source());
  o.bind("log_bad_rows", &log_bad_rows, 20, "how many skipped rows to log one by one (all go to bad_rows.jsonl)");
}

// ---- images ----------------------------------------------------------------------------------------------------

std::string check_image_file(const std::string& path, std::string& message) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    message = "image file '" + path + "' does not exist";
    return "missing_image";
  }
  if (!fs::is_regular_file(path, ec)) {
    message = "image path '" + path + "' is not a regular file";
    return "unreadable_image";
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    message = "cannot open image file '" + path + "': " + std::strerror(errno);
    return "unreadable_image";
  }
  uint8_t h[image::kSniffBytes] = {0};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  const size_t n = static_cast<size_t>(in.gcount());
  // The decoder's own test of the format (core/lib/image/format.h), so a row passes only if its image can be read.
  const image::ImageFormat format = image::sniff_image_format(h, n);
  if (!image::is_decodable(format)) {
    message = "image file '" + path + "' is " +
              (n == 0 ? std::string("empty")
                      : (format == image::ImageFormat::kTiff ? "a TIFF image, which the image decoder does not read"
                                                             : "not an image")) +
              " (expected " + image::kDecodableFormats + ")";
    return "unreadable_image";
  }
  return "";
}

// ---- loading ---------------------------------------------------------------------------------------------------

namespace {

// The image paths of the row the parser just appended, and a way to take that row back.
std::vector<std::string>& last_images(RowSet& rows) {
  switch (rows.kind) {
    case RowKind::Conversation: return rows.conversations.back().images;
    case RowKind::Preference: return rows.preferences.back().images;
    case RowKind::ScoredCandidates: return rows.scored.back().images;
  }
  throw InternalError("unknown row kind");
}
void drop_last(RowSet& rows) {
  switch (rows.kind) {
    case RowKind::Conversation: rows.conversations.pop_back(); break;
    case RowKind::Preference: rows.preferences.pop_back(); break;
    case RowKind::ScoredCandidates: rows.scored.pop_back(); break;
  }
}

// Reads row files into a LoadResult. image_folder remaps are per-row path rewrites, so they are applied (in list
// order) as each row is read: the image check sees the final paths, and every row that reaches the other
// transforms is valid.
class RowReader {
 public:
  RowReader(const PipelineOptions& opt, DataContext& ctx, RowParser parser, LoadResult& result)
      : opt_(opt), ctx_(ctx), parser_(parser), result_(result) {
    for (const auto& t : opt.transforms)
      if (t.name == "image_folder") remaps_.push_back(t);
  }

  void read(const std::string& file) {
    for_each_record(file, [&](Record& rec) {
      if (ctx_.stop_requested && (rec.row % 4096) == 0 && ctx_.stop_requested()) throw Interrupted();
      ++result_.rows_read;
      take(file, rec);
      kill_point("data.row_read");
      return true;
    });
  }

 private:
  void take(const std::string& file, const Record& rec) {
    if (rec.parse_error) return bad({file, rec.row, "bad_json", *rec.parse_error});
    const size_t before = result_.rows.size();
    try {
      parser_(rec.value, RowOrigin{file, rec.row}, opt_.parse, result_.rows);
    } catch (const BadRow& e) {
      return bad({file, rec.row, e.reason(), e.what()});
    }
    if (result_.rows.size() == before) return;
    std::vector<std::string>& images = last_images(result_.rows);
    for (auto& img : images)
      for (const auto& t : remaps_)
        if (remap_image_path(img, t)) ++result_.counts["images_remapped"];
    if (!opt_.check_images) return;
    std::string reason, message;
    for (const auto& img : images)
      if (!(reason = check_image_file(img, message)).empty()) break;
    if (reason.empty()) return;
    drop_last(result_.rows);
    bad({file, rec.row, reason, message});
  }

  // on_bad_row: fail stops here; skip counts the row, logs the first few and keeps it for bad_rows.jsonl.
  void bad(BadRowReport r) {
    if (!opt_.skip_bad_rows)
      throw DataError(r.text() + " (on_bad_row: fail; set on_bad_row: skip to drop and count bad rows)");
    ++result_.counts["skipped/" + r.reason];
    if (ctx_.log && static_cast<int64_t>(result_.bad_rows.size()) < opt_.log_bad_rows)
      ctx_.log->warn("skipping {}", r.text());
    result_.bad_rows.push_back(std::move(r));
  }

  const PipelineOptions& opt_;
  DataContext& ctx_;
  RowParser parser_;
  LoadResult& result_;
  std::vector<Transform> remaps_;
};

// rows.h's parser of one row kind, appending to the RowSet's rows of that kind.
template <typename Row, Row (*Parse)(const nlohmann::json&, const RowOrigin&, const ParseOptions&),
          std::vector<Row> RowSet::*Rows>
void parse_into(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out) {
  (out.*Rows).push_back(Parse(row, origin, opt));
}

std::string compact(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx, RowParser parser) {
  LoadResult result;
  result.rows.kind = input;
  output_kind(input, opt.transforms);  // a transform that does not fit the rows fails before any reading
  RowReader reader(opt, ctx, parser, result);
  for (const auto& file : opt.files) reader.read(file);
  std::vector<Transform> rest;  // the image_folder remaps are done (RowReader)
  for (const auto& t : opt.transforms)
    if (t.name != "image_folder") rest.push_back(t);
  apply_transforms(result.rows, rest, opt.seed.value_or(ctx.seed), result.counts);
  return result;
}

LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx) {
  switch (input) {
    case RowKind::Conversation:
      return load_dataset(opt, input, ctx, &parse_into<ConversationRow, &parse_conversation_row, &RowSet::conversations>);
    case RowKind::Preference:
      return load_dataset(opt, input, ctx, &parse_into<PreferenceRow, &parse_preference_row, &RowSet::preferences>);
    case RowKind::ScoredCandidates:
      return load_dataset(opt, input, ctx, &parse_into<ScoredCandidatesRow, &parse_scored_candidates_row, &RowSet::scored>);
  }
  throw InternalError("unknown row kind");
}

void record_metrics(const LoadResult& r, DataContext& ctx) {
  ctx.record("rows_read", static_cast<double>(r.rows_read));
  ctx.record("rows_kept", static_cast<double>(r.rows.size()));
  ctx.record("rows_skipped", static_cast<double>(r.bad_rows.size()));
  for (const auto& [name, value] : r.counts) ctx.record(name, static_cast<double>(value));
}

void write_rows(const RowSet& rows, const fs::path& path) {
  AtomicFile file(path);
  auto each = [&](const auto& v) {
    for (const auto& r : v) file.stream() << compact(to_json(r)) << '\n';
  };
  switch (rows.kind) {
    case RowKind::Conversation: each(rows.conversations); break;
    case RowKind::Preference: each(rows.preferences); break;
    case RowKind::ScoredCandidates: each(rows.scored); break;
  }
  file.commit();
}

void write_bad_rows(const std::vector<BadRowReport>& bad, const fs::path& path) {
  AtomicFile file(path);
  for (const auto& b : bad)
    file.stream() << compact(nlohmann::ordered_json{{"file", b.file}, {"row", b.row}, {"reason", b.reason},
                                                     {"message", b.message}})
                  << '\n';
  file.commit();
}

// ---- the dataset classes ---------------------------------------------------------------------------------------

RowSet PipelineDataset::rows_of(RowKind kind, DataContext& ctx) {
  if (output_ != kind) not_provided(kind);
  LoadResult r = load_rows(ctx);
  record_metrics(r, ctx);
  return std::move(r.rows);
}

std::vector<ConversationRow> PipelineDataset::conversation_rows(DataContext& ctx) {
  return std::move(rows_of(RowKind::Conversation, ctx).conversations);
}
std::vector<PreferenceRow> PipelineDataset::preference_rows(DataContext& ctx) {
  return std::move(rows_of(RowKind::Preference, ctx).preferences);
}
std::vector<ScoredCandidatesRow> PipelineDataset::scored_candidates_rows(DataContext& ctx) {
  return std::move(rows_of(RowKind::ScoredCandidates, ctx).scored);
}

void PipelineDataset::write_artifacts(const LoadResult& r, StageContext& ctx) {
  write_rows(r.rows, ctx.stage_dir() / "rows.jsonl");
  ctx.add_artifact("rows", "rows.jsonl");
  if (r.bad_rows.empty()) return;
  write_bad_rows(r.bad_rows, ctx.stage_dir() / "bad_rows.jsonl");
  ctx.add_artifact("bad_rows", "bad_rows.jsonl");
}

PipelineOptions PipelineOptions::from(const Options& options) {
  return read_options<FileDataset::Config>(options).pipeline;
}

FileDataset::FileDataset(PipelineOptions options, RowKind input)
    : PipelineDataset(output_kind(input, options.transforms)), opt_(std::move(options)), input_(input) {}

LoadResult FileDataset::load(DataContext& ctx) const { return load_dataset(opt_, input_, ctx); }

void FileDataset::run(StageContext& ctx) {
  DataContext data = DataContext::for_stage(ctx);
  LoadResult r = load(data);
  record_metrics(r, data);
  kill_point("data.before_write");  // every row read, nothing written
  write_artifacts(r, ctx);
  kill_point("data.after_write");
  ctx.log().info("{} {} row(s) read, {} kept, {} skipped as bad{}", ctx.stage_name(), r.rows_read, r.rows.size(),
                 r.bad_rows.size(), r.bad_rows.empty() ? "" : " (see bad_rows.jsonl)");
}

}  // namespace mmr::data
