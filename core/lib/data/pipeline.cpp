#include "core/lib/data/pipeline.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/lib/data/records.h"

namespace mmr::data {
namespace fs = std::filesystem;

OptionSchema common_option_schema() {
  return {
      {"file", "any", "", "the row file (JSON array or JSONL), or a list of them read in order", true},
      {"image_folder", "path", "\"\"", "folder that relative image paths are joined to"},
      {"on_bad_row", "string", "fail", "fail: stop at the first bad row (file:row and reason); skip: drop and count it"},
      {"check_images", "bool", "true", "check that every image file of a kept row exists and reads as an image"},
      {"image_token", "string", "require",
       "an image without \"<image>\" in the text: require (bad row), add (prepend \"<image>\\n\"), ignore"},
      {"seed", "int", "", "seed of the transforms that give none (default: the trial seed)"},
      {"transforms", "list", "[]", "transforms applied in order: fraction, flip_fraction, shuffle, max_rows, filter, "
                                    "image_folder, build_pairs (see plugins/datasets/README.md)"},
      {"log_bad_rows", "int", "20", "how many skipped rows to log one by one (all go to bad_rows.jsonl)"},
  };
}

PipelineOptions PipelineOptions::from(const Options& o) {
  PipelineOptions p;
  const YAML::Node file = o.node()["file"];
  if (file && file.IsScalar()) {
    p.files.push_back(file.Scalar());
  } else if (file && file.IsSequence() && file.size() > 0) {
    for (const auto& f : file) {
      if (!f.IsScalar()) throw ConfigError(o.where(f) + "option 'file': expected a path, found a " + (f.IsMap() ? "map" : "list"));
      p.files.push_back(f.Scalar());
    }
  } else {
    throw ConfigError(o.where(file ? file : o.node()) + "option 'file': expected a path or a non-empty list of paths");
  }
  p.parse.image_folder = o.get<std::string>("image_folder", "");
  const std::string policy = o.get<std::string>("on_bad_row", "fail");
  if (policy != "fail" && policy != "skip")
    throw ConfigError(o.where(o.node()["on_bad_row"]) + "option 'on_bad_row': expected fail or skip, found '" + policy + "'");
  p.skip_bad_rows = policy == "skip";
  p.check_images = o.get<bool>("check_images", true);
  const std::string token = o.get<std::string>("image_token", "require");
  if (token == "require") p.parse.image_token = ImageTokenPolicy::Require;
  else if (token == "add") p.parse.image_token = ImageTokenPolicy::Add;
  else if (token == "ignore") p.parse.image_token = ImageTokenPolicy::Ignore;
  else throw ConfigError(o.where(o.node()["image_token"]) + "option 'image_token': expected require, add or ignore, found '" + token + "'");
  if (o.has("seed")) {
    const auto s = o.get<int64_t>("seed");
    if (s < 0) throw ConfigError(o.where(o.node()["seed"]) + "option 'seed': expected a non-negative integer");
    p.seed = static_cast<uint64_t>(s);
  }
  if (o.has("required_attributes")) {
    p.parse.required_attributes.clear();
    for (const auto& a : o.node()["required_attributes"]) p.parse.required_attributes.push_back(a.as<std::string>());
  }
  p.transforms = parse_transforms(o.node()["transforms"], o.source());
  p.log_bad_rows = o.get<int64_t>("log_bad_rows", 20);
  return p;
}

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
  unsigned char h[12] = {0};
  in.read(reinterpret_cast<char*>(h), sizeof h);
  const std::streamsize n = in.gcount();
  const bool png = n >= 8 && h[0] == 0x89 && h[1] == 'P' && h[2] == 'N' && h[3] == 'G';
  const bool jpeg = n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF;
  const bool gif = n >= 6 && h[0] == 'G' && h[1] == 'I' && h[2] == 'F' && h[3] == '8';
  const bool bmp = n >= 2 && h[0] == 'B' && h[1] == 'M';
  const bool webp = n >= 12 && std::memcmp(h, "RIFF", 4) == 0 && std::memcmp(h + 8, "WEBP", 4) == 0;
  const bool tiff = n >= 4 && ((h[0] == 'I' && h[1] == 'I' && h[2] == 42 && h[3] == 0) || (h[0] == 'M' && h[1] == 'M' && h[2] == 0 && h[3] == 42));
  if (!(png || jpeg || gif || bmp || webp || tiff)) {
    message = "image file '" + path + "' is " + (n == 0 ? "empty" : "not a PNG, JPEG, GIF, BMP, WebP or TIFF image");
    return "unreadable_image";
  }
  return "";
}

namespace {

class BadRowSink {
 public:
  BadRowSink(const PipelineOptions& opt, DataContext& ctx, LoadResult& result) : opt_(opt), ctx_(ctx), result_(result) {}
  void add(BadRowReport r) {
    if (!opt_.skip_bad_rows)
      throw DataError(r.text() + " (on_bad_row: fail; set on_bad_row: skip to drop and count bad rows)");
    ++result_.counts["skipped/" + r.reason];
    if (ctx_.log && static_cast<int64_t>(result_.bad_rows.size()) < opt_.log_bad_rows) ctx_.log->warn("skipping {}", r.text());
    result_.bad_rows.push_back(std::move(r));
  }

 private:
  const PipelineOptions& opt_;
  DataContext& ctx_;
  LoadResult& result_;
};

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

void write_lines_atomically(const fs::path& path, const std::function<void(std::ostream&)>& fn) {
  const fs::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError("cannot open '" + tmp.string() + "' for writing: " + std::strerror(errno));
    fn(out);
    out.flush();
    if (!out) throw IoError("error writing '" + tmp.string() + "': " + std::strerror(errno));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw IoError("cannot rename '" + tmp.string() + "' to '" + path.string() + "': " + ec.message());
}

}  // namespace

LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx, RowParser parser) {
  LoadResult result;
  result.rows.kind = input;
  output_kind(input, opt.transforms);  // a transform that does not fit the rows fails before any reading
  BadRowSink sink(opt, ctx, result);
  // image_folder remaps are per-row path rewrites: they are applied (in list order) as each row is read, so the
  // image check sees the final paths and every row that reaches the other transforms is valid.
  std::vector<Transform> remaps, rest;
  for (const auto& t : opt.transforms) (t.name == "image_folder" ? remaps : rest).push_back(t);
  for (const auto& file : opt.files) {
    for_each_record(file, [&](Record& rec) {
      if (ctx.stop_requested && (rec.row % 4096) == 0 && ctx.stop_requested()) throw Interrupted();
      ++result.rows_read;
      const RowOrigin origin{file, rec.row};
      if (rec.parse_error) {
        sink.add({file, rec.row, "bad_json", *rec.parse_error});
        return true;
      }
      const size_t before = result.rows.size();
      try {
        parser(rec.value, origin, opt.parse, result.rows);
      } catch (const BadRow& e) {
        sink.add({file, rec.row, e.reason(), e.what()});
        return true;
      }
      if (result.rows.size() == before) return true;
      std::vector<std::string>& images = last_images(result.rows);
      for (auto& img : images)
        for (const auto& t : remaps)
          if (remap_image_path(img, t)) ++result.counts["images_remapped"];
      if (opt.check_images) {
        std::string reason, message;
        for (const auto& img : images)
          if (!(reason = check_image_file(img, message)).empty()) break;
        if (!reason.empty()) {
          drop_last(result.rows);
          sink.add({file, rec.row, reason, message});
        }
      }
      return true;
    });
  }
  apply_transforms(result.rows, rest, opt.seed.value_or(ctx.seed), result.counts);
  return result;
}

LoadResult load_dataset(const PipelineOptions& opt, RowKind input, DataContext& ctx) {
  switch (input) {
    case RowKind::Conversation: return load_dataset(opt, input, ctx, &parse_into_conversations);
    case RowKind::Preference: return load_dataset(opt, input, ctx, &parse_into_preferences);
    case RowKind::ScoredCandidates: return load_dataset(opt, input, ctx, &parse_into_scored);
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
  write_lines_atomically(path, [&](std::ostream& out) {
    auto each = [&](const auto& v) {
      for (const auto& r : v) out << to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    };
    switch (rows.kind) {
      case RowKind::Conversation: each(rows.conversations); break;
      case RowKind::Preference: each(rows.preferences); break;
      case RowKind::ScoredCandidates: each(rows.scored); break;
    }
  });
}

void write_bad_rows(const std::vector<BadRowReport>& bad, const fs::path& path) {
  write_lines_atomically(path, [&](std::ostream& out) {
    for (const auto& b : bad)
      out << nlohmann::ordered_json{{"file", b.file}, {"row", b.row}, {"reason", b.reason}, {"message", b.message}}.dump(
                 -1, ' ', false, nlohmann::json::error_handler_t::replace)
          << '\n';
  });
}

void parse_into_conversations(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out) {
  out.conversations.push_back(parse_conversation_row(row, origin, opt));
}
void parse_into_preferences(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out) {
  out.preferences.push_back(parse_preference_row(row, origin, opt));
}
void parse_into_scored(const nlohmann::json& row, const RowOrigin& origin, const ParseOptions& opt, RowSet& out) {
  out.scored.push_back(parse_scored_candidates_row(row, origin, opt));
}

// ---- FileDataset -------------------------------------------------------------------------------------------

FileDataset::FileDataset(const Options& options, RowKind input, Parser parser)
    : opt_(PipelineOptions::from(options)), input_(input), output_(output_kind(input, opt_.transforms)), parser_(parser) {}

LoadResult FileDataset::load(DataContext& ctx) const { return load_dataset(opt_, input_, ctx, parser_); }

std::vector<ConversationRow> FileDataset::conversation_rows(DataContext& ctx) {
  if (output_ != RowKind::Conversation) not_provided(RowKind::Conversation);
  LoadResult r = load(ctx);
  record_metrics(r, ctx);
  return std::move(r.rows.conversations);
}

std::vector<PreferenceRow> FileDataset::preference_rows(DataContext& ctx) {
  if (output_ != RowKind::Preference) not_provided(RowKind::Preference);
  LoadResult r = load(ctx);
  record_metrics(r, ctx);
  return std::move(r.rows.preferences);
}

std::vector<ScoredCandidatesRow> FileDataset::scored_candidates_rows(DataContext& ctx) {
  if (output_ != RowKind::ScoredCandidates) not_provided(RowKind::ScoredCandidates);
  LoadResult r = load(ctx);
  record_metrics(r, ctx);
  return std::move(r.rows.scored);
}

void FileDataset::run(StageContext& ctx) {
  DataContext data = DataContext::for_stage(ctx);
  LoadResult r = load(data);
  record_metrics(r, data);
  write_rows(r.rows, ctx.stage_dir() / "rows.jsonl");
  ctx.add_artifact("rows", "rows.jsonl");
  if (!r.bad_rows.empty()) {
    write_bad_rows(r.bad_rows, ctx.stage_dir() / "bad_rows.jsonl");
    ctx.add_artifact("bad_rows", "bad_rows.jsonl");
  }
  ctx.log().info("{} {} row(s) read, {} kept, {} skipped as bad{}", ctx.stage_name(), r.rows_read, r.rows.size(),
                 r.bad_rows.size(), r.bad_rows.empty() ? "" : " (see bad_rows.jsonl)");
}

}  // namespace mmr::data
