// Dataset "synthetic": the generated shape world (world.h) as a dataset plugin. As a stage it writes the world into
// the stage folder (artifact `world`) and the rows of one kind, loaded, validated and transformed by the same
// pipeline as the file datasets (artifact `rows`); as a component it hands those rows to an algorithm, generating
// the world into `dir` (or a per-config folder under the temp dir) unless a complete one is already there.
#include <fstream>

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

class Synthetic : public mmr::DatasetProvider {
 public:
  explicit Synthetic(const mmr::Options& o) : options_(o) {
    config_json_ = to_json(o.node()["config"]);
    if (config_json_.is_null()) config_json_ = nlohmann::json::object();
    mmr::synthetic::WorldConfig::from_json(config_json_);  // unknown keys and bad values fail at creation
    const std::string rows = o.get<std::string>("rows", "preference");
    if (rows == "preference") input_ = RowKind::Preference;
    else if (rows == "conversation") input_ = RowKind::Conversation;
    else if (rows == "scored_candidates") input_ = RowKind::ScoredCandidates;
    else throw mmr::ConfigError(o.where(o.node()["rows"]) + "option 'rows': expected preference, conversation or "
                                "scored_candidates, found '" + rows + "'");
    pipeline_ = pipeline_options(o, "/dev/null");
    output_ = mmr::data::output_kind(input_, pipeline_.transforms);
  }
  static const char* summary() {
    return "a generated shape world (images, VQA, text tasks, scored candidates, pairs) as dataset rows";
  }
  static mmr::OptionSchema option_schema() {
    mmr::OptionSchema s = {
        {"config", "map", "{}", "world config (world.h: image_size, num_train_images, ...; seed defaults to the trial seed)"},
        {"rows", "string", "preference", "rows handed on: preference (pairs.jsonl), conversation (vqa_train.json + "
                                          "text_train.json) or scored_candidates (scored_candidates.jsonl)"},
        {"dir", "path", "\"\"", "where the world is generated when used by an algorithm (default: a folder per config "
                                "under the temp dir); a stage writes it into its own folder"},
    };
    for (auto o : mmr::data::common_option_schema()) {
      if (o.name == "file" || o.name == "image_folder") continue;  // the world's own files
      if (o.name == "image_token") o.default_yaml = "add";         // pairs.jsonl questions carry no <image>
      s.push_back(o);
    }
    return s;
  }

  std::vector<RowKind> row_kinds() const override { return {output_}; }

  std::vector<mmr::ConversationRow> conversation_rows(mmr::DataContext& ctx) override {
    if (output_ != RowKind::Conversation) not_provided(RowKind::Conversation);
    return std::move(load(ctx, component_dir(ctx)).rows.conversations);
  }
  std::vector<mmr::PreferenceRow> preference_rows(mmr::DataContext& ctx) override {
    if (output_ != RowKind::Preference) not_provided(RowKind::Preference);
    return std::move(load(ctx, component_dir(ctx)).rows.preferences);
  }
  std::vector<mmr::ScoredCandidatesRow> scored_candidates_rows(mmr::DataContext& ctx) override {
    if (output_ != RowKind::ScoredCandidates) not_provided(RowKind::ScoredCandidates);
    return std::move(load(ctx, component_dir(ctx)).rows.scored);
  }

  void run(mmr::StageContext& ctx) override {
    mmr::DataContext data = mmr::DataContext::for_stage(ctx);
    const fs::path dir = ctx.stage_dir() / "world";
    const auto stats = mmr::synthetic::generate_world(world_config(data.seed), dir);
    ctx.add_artifact("world", dir);
    const nlohmann::ordered_json counts = stats.to_json();
    for (const auto& [key, value] : counts.items()) {
      if (value.is_number()) ctx.log_metric("world/" + key, value.get<double>());
      if (value.is_object())
        for (const auto& [k2, v2] : value.items())
          if (v2.is_number()) ctx.log_metric("world/" + key + "/" + k2, v2.get<double>());
    }
    mmr::data::LoadResult r = load(data, dir);
    mmr::data::write_rows(r.rows, ctx.stage_dir() / "rows.jsonl");
    ctx.add_artifact("rows", "rows.jsonl");
    if (!r.bad_rows.empty()) {
      mmr::data::write_bad_rows(r.bad_rows, ctx.stage_dir() / "bad_rows.jsonl");
      ctx.add_artifact("bad_rows", "bad_rows.jsonl");
    }
  }

 private:
  mmr::synthetic::WorldConfig world_config(uint64_t trial_seed) const {
    nlohmann::json j = config_json_;
    if (!j.contains("seed")) j["seed"] = trial_seed;
    return mmr::synthetic::WorldConfig::from_json(j);
  }

  // The folder an algorithm's rows come from: `dir`, or one per config under the temp dir; generated unless a
  // complete world (manifest.json is written last) with this config is already there.
  fs::path component_dir(mmr::DataContext& ctx) const {
    const auto config = world_config(ctx.seed);
    const std::string text = config.to_json().dump();
    fs::path dir = options_.get<std::string>("dir", "");
    if (dir.empty())
      dir = fs::temp_directory_path() / ("mmr_synthetic_" + std::to_string(mmr::data::fnv1a64(text)));
    bool complete = false;
    if (std::ifstream in{dir / "manifest.json"}) {
      try {
        complete = nlohmann::json::parse(in).value("config", nlohmann::json()).dump() == text;
      } catch (const std::exception&) {
      }
    }
    if (!complete) {
      if (ctx.log) ctx.log->info("synthetic: generating the world into {}", dir.string());
      mmr::synthetic::generate_world(config, dir);
    }
    return dir;
  }

  static mmr::data::PipelineOptions pipeline_options(const mmr::Options& o, const std::string& file) {
    YAML::Node node = YAML::Clone(o.node());
    node["file"] = file;
    return mmr::data::PipelineOptions::from(mmr::Options(node, o.source()));
  }

  mmr::data::LoadResult load(mmr::DataContext& ctx, const fs::path& dir) const {
    mmr::data::PipelineOptions p = pipeline_;
    p.parse.image_folder = (dir / "images").string();
    switch (input_) {
      case RowKind::Preference: p.files = {(dir / "pairs.jsonl").string()}; break;
      case RowKind::Conversation: p.files = {(dir / "vqa_train.json").string(), (dir / "text_train.json").string()}; break;
      case RowKind::ScoredCandidates: p.files = {(dir / "scored_candidates.jsonl").string()}; break;
    }
    mmr::data::LoadResult r = mmr::data::load_dataset(p, input_, ctx);
    mmr::data::record_metrics(r, ctx);
    return r;
  }

  mmr::Options options_;
  nlohmann::json config_json_;
  RowKind input_ = RowKind::Preference, output_ = RowKind::Preference;
  mmr::data::PipelineOptions pipeline_;
};

}  // namespace

MMR_PLUGIN(Dataset, "synthetic", "1.0.0", Synthetic)
