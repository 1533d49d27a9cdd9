// Dataset "synthetic": the generated shape world (world.h) as a dataset plugin. As a stage it writes the world into
// the stage folder (artifact `world`) and the rows of one kind, loaded, validated and transformed by the same
// pipeline as the file datasets (artifact `rows`); as a component it hands those rows to an algorithm, generating
// the world into `dir` (or a per-config folder in the user's cache) unless a complete one is already there.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <optional>

#include "core/lib/data/pipeline.h"
#include "plugins/datasets/synthetic/world.h"

namespace {

namespace fs = std::filesystem;
using mmr::RowKind;

// YAML -> JSON for the world config (plain scalars typed: int, float, bool, else string).
nlohmann::json to_json(const YAML::Node& n) {
  if (!n || n.IsNull()) return nullptr;
  if (n.IsSequence()) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& e : n) a.push_back(to_json(e));
    return a;
  }
  if (n.IsMap()) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& kv : n) o[kv.first.Scalar()] = to_json(kv.second);
    return o;
  }
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted
  int64_t i;
  double d;
  bool b;
  if (s.find_first_of(".eE") == std::string::npos && YAML::convert<int64_t>::decode(n, i)) return i;
  if (YAML::convert<double>::decode(n, d)) return d;
  if (YAML::convert<bool>::decode(n, b)) return b;
  return s;
}

// The row kind named by the `rows` option.
std::optional<RowKind> row_kind_named(const std::string& name) {
  for (RowKind k : {RowKind::Preference, RowKind::Conversation, RowKind::ScoredCandidates})
    if (name == mmr::row_kind_name(k)) return k;
  return std::nullopt;
}

class Synthetic : public mmr::data::PipelineDataset {
 public:
  struct Config {
    YAML::Node config;
    std::string rows, dir;
    RowKind input = RowKind::Preference;  // from `rows`
    mmr::data::PipelineOptions pipeline;

    void bind(mmr::OptionBinder& o) {
      o.bind("config", &config, YAML::Node(YAML::NodeType::Map),
             "world config (world.h: image_size, num_train_images, ...; seed defaults to the trial seed)", "map");
      o.bind("rows", &rows, "preference",
             "rows handed on: preference (pairs.jsonl), conversation (vqa_train.json + text_train.json) or "
             "scored_candidates (scored_candidates.jsonl)");
      const auto kind = row_kind_named(rows);
      o.check(kind.has_value(), "rows", "expected preference, conversation or scored_candidates, found '" + rows + "'");
      input = kind.value_or(RowKind::Preference);
      o.bind("dir", &dir, "",
             "where the world is generated when used by an algorithm (default: a folder per config under "
             "$XDG_CACHE_HOME or ~/.cache, mmrunner/synthetic); a stage writes it into its own folder",
             "output");
      // No file or image_folder: the rows come from the world's own files, whose pair questions carry no <image>.
      pipeline.bind_rows(o, "add");
    }
  };

  explicit Synthetic(const mmr::Options& o) : Synthetic(mmr::read_options<Config>(o)) {}
  static const char* summary() {
    return "a generated shape world (images, VQA, text tasks, scored candidates, pairs) as dataset rows";
  }

  void run(mmr::StageContext& ctx) override {
    mmr::DataContext data = mmr::DataContext::for_stage(ctx);
    const fs::path dir = ctx.stage_dir() / "world";
    const auto stats = mmr::synthetic::generate_world(world_config(data.seed), dir);
    ctx.add_artifact("world", dir);
    log_counts(stats.to_json(), ctx);
    mmr::data::LoadResult r = load(data, dir);
    mmr::data::record_metrics(r, data);
    write_artifacts(r, ctx);
  }

 protected:
  mmr::data::LoadResult load_rows(mmr::DataContext& ctx) override { return load(ctx, component_dir(ctx)); }

 private:
  explicit Synthetic(Config c)
      : PipelineDataset(mmr::data::output_kind(c.input, c.pipeline.transforms)),
        config_json_(to_json(c.config)),
        dir_(c.dir),
        input_(c.input),
        pipeline_(std::move(c.pipeline)) {
    if (config_json_.is_null()) config_json_ = nlohmann::json::object();
    mmr::synthetic::WorldConfig::from_json(config_json_);  // unknown keys and bad values fail at creation
  }

  mmr::synthetic::WorldConfig world_config(uint64_t trial_seed) const {
    nlohmann::json j = config_json_;
    if (!j.contains("seed")) j["seed"] = trial_seed;
    return mmr::synthetic::WorldConfig::from_json(j);
  }

  // The world's counts as metrics world/<count> (and world/<group>/<count>).
  static void log_counts(const nlohmann::ordered_json& counts, mmr::StageContext& ctx) {
    for (const auto& [key, value] : counts.items()) {
      if (value.is_number()) ctx.log_metric("world/" + key, value.get<double>());
      if (value.is_object())
        for (const auto& [k2, v2] : value.items())
          if (v2.is_number()) ctx.log_metric("world/" + key + "/" + k2, v2.get<double>());
    }
  }

  // Where generated worlds are kept between runs of one user: $XDG_CACHE_HOME/mmrunner/synthetic, else
  // ~/.cache/mmrunner/synthetic. Not a fixed name under /tmp, which another user could create first and fill
  // with his own rows; a folder that is not this user's or that others may write to is refused for that reason.
  static fs::path world_cache() {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    const char* home = std::getenv("HOME");
    if (!(xdg && *xdg) && !(home && *home))
      throw mmr::ConfigError("synthetic: neither XDG_CACHE_HOME nor HOME is set: give the world a folder with 'dir'");
    const fs::path dir = (xdg && *xdg ? fs::path(xdg) : fs::path(home) / ".cache") / "mmrunner" / "synthetic";
    fs::create_directories(dir);
    struct stat st {};
    if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) != 0)
      throw mmr::ConfigError("synthetic: the world cache '" + dir.string() + "' is not a folder of this user that "
                             "only this user may write to; fix its permissions or give the world a folder with 'dir'");
    return dir;
  }

  // The folder an algorithm's rows come from: `dir`, or one per config in world_cache(); generated unless a
  // complete world (manifest.json is written last) of this format version with this config is already there.
  fs::path component_dir(mmr::DataContext& ctx) const {
    const auto config = world_config(ctx.seed);
    const std::string text = config.to_json().dump();
    fs::path dir = dir_;
    if (dir.empty()) dir = world_cache() / std::to_string(mmr::data::fnv1a64(text));
    bool complete = false;
    if (std::ifstream in{dir / "manifest.json"}) {
      try {
        const nlohmann::json manifest = nlohmann::json::parse(in);
        complete = manifest.value("format_version", 0) == mmr::synthetic::kWorldFormatVersion &&
                   manifest.value("config", nlohmann::json()).dump() == text;
      } catch (const std::exception&) {
      }
    }
    if (!complete) {
      if (ctx.log) ctx.log->info("synthetic: generating the world into {}", dir.string());
      mmr::synthetic::generate_world(config, dir);
    }
    return dir;
  }

  // The rows of the world in `dir`, through the same pipeline as the file datasets.
  mmr::data::LoadResult load(mmr::DataContext& ctx, const fs::path& dir) const {
    mmr::data::PipelineOptions p = pipeline_;
    p.parse.image_folder = (dir / "images").string();
    switch (input_) {
      case RowKind::Preference: p.files = {(dir / "pairs.jsonl").string()}; break;
      case RowKind::Conversation: p.files = {(dir / "vqa_train.json").string(), (dir / "text_train.json").string()}; break;
      case RowKind::ScoredCandidates: p.files = {(dir / "scored_candidates.jsonl").string()}; break;
    }
    return mmr::data::load_dataset(p, input_, ctx);
  }

  nlohmann::json config_json_;
  std::string dir_;
  RowKind input_;
  mmr::data::PipelineOptions pipeline_;
};

}  // namespace

MMR_PLUGIN(Dataset, "synthetic", "1.0.0", Synthetic)
