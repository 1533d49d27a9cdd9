#include "core/lib/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include "core/lib/data/rows.h"

namespace mmr::data {

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t n) {
  MMR_CHECK(n > 0, "below(0)");
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the top partial block: no modulo bias
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t mix_seed(uint64_t seed, const std::string& stream, uint64_t extra) {
  SplitMix64 g(seed ^ fnv1a64(stream));
  const uint64_t a = g.next();
  return SplitMix64(a ^ (extra * 0x9E3779B97F4A7C15ULL)).next();
}

std::vector<size_t> permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 g(seed);
  for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[g.below(i)]);
  return p;
}

// num and den reach 10^18, so num * n needs 128 bits.
__extension__ typedef unsigned __int128 u128;

size_t Fraction::of(size_t n) const {
  const u128 twice = static_cast<u128>(num) * n * 2 + den;
  return static_cast<size_t>(twice / (static_cast<u128>(den) * 2));
}

namespace {

// p/q with both parts plain digits ("1/3"); false when the text is not of that form.
bool read_ratio(const std::string& t, Fraction& f) {
  const size_t slash = t.find('/');
  auto digits = [](const std::string& s) { return !s.empty() && std::all_of(s.begin(), s.end(), ::isdigit); };
  const std::string a = t.substr(0, slash), b = t.substr(slash + 1);
  if (!digits(a) || !digits(b) || a.size() > 18 || b.size() > 18) return false;
  f.num = std::stoull(a);
  f.den = std::stoull(b);
  return true;
}

// A decimal with an optional exponent ("+0.25", "2.5e-1") as mantissa / 10^scale; false when it is not one.
bool read_decimal(const std::string& t, std::string& mantissa, int& scale) {
  size_t i = 0;
  if (i < t.size() && t[i] == '+') ++i;
  int decimals = 0;
  bool dot = false, any = false;
  for (; i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || (t[i] == '.' && !dot)); ++i) {
    if (t[i] == '.') {
      dot = true;
      continue;
    }
    any = true;
    mantissa += t[i];
    if (dot) ++decimals;
  }
  if (!any) return false;
  int exponent = 0;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    const std::string e = t.substr(i + 1);
    size_t used = 0;
    try {
      exponent = std::stoi(e, &used);
    } catch (const std::exception&) {
      return false;
    }
    if (used != e.size()) return false;
    i = t.size();
  }
  if (i != t.size()) return false;
  mantissa.erase(0, std::min(mantissa.find_first_not_of('0'), mantissa.size()));
  // Trailing zeros after the point carry no value; dropping them keeps the numbers small.
  while (decimals > 0 && !mantissa.empty() && mantissa.back() == '0') {
    mantissa.pop_back();
    --decimals;
  }
  scale = decimals - exponent;
  return true;
}

}  // namespace

Fraction parse_fraction(const std::string& raw, const std::string& where) {
  auto bad = [&](const std::string& why) -> ConfigError {
    return ConfigError(where + "expected a fraction between 0 and 1 (e.g. 0.25), found '" + raw + "'" +
                       (why.empty() ? "" : ": " + why));
  };
  std::string t = raw;
  t.erase(0, t.find_first_not_of(" \t"));
  t.erase(t.find_last_not_of(" \t") + 1);
  Fraction f;
  f.text = t;
  if (t.find('/') != std::string::npos) {
    if (!read_ratio(t, f)) throw bad("");
    if (f.den == 0) throw bad("zero denominator");
  } else {
    std::string mantissa;
    int scale = 0;  // value = mantissa / 10^scale
    if (!read_decimal(t, mantissa, scale)) throw bad("");
    if (mantissa.empty()) return f.num = 0, f.den = 1, f;
    if (mantissa.size() > 18 || scale > 18 || scale < -18) throw bad("too many digits");
    f.num = std::stoull(mantissa);
    f.den = 1;
    for (int k = 0; k < std::abs(scale); ++k) (scale > 0 ? f.den : f.num) *= 10;
  }
  if (f.num > f.den) throw bad("greater than 1");
  return f;
}

size_t RowSet::size() const {
  switch (kind) {
    case RowKind::Conversation: return conversations.size();
    case RowKind::Preference: return preferences.size();
    case RowKind::ScoredCandidates: return scored.size();
  }
  return 0;
}

// ---- parsing -------------------------------------------------------------------------------------------------

namespace {

std::string where_of(const YAML::Node& node, const std::string& source) { return Options(node, source).where(node); }

const std::map<std::string, std::set<std::string>>& known_params() {
  static const std::map<std::string, std::set<std::string>> k = {
      {"fraction", {"value", "seed"}},
      {"flip_fraction", {"value", "seed"}},
      {"shuffle", {"seed"}},
      {"max_rows", {"value"}},
      {"filter", {"field", "equals", "in", "regex", "not"}},
      {"image_folder", {"from", "to"}},
      {"build_pairs", {"attributes", "min_gap", "rejected", "seed"}},
  };
  return k;
}

std::string known_names() {
  std::string s;
  for (const auto& [name, params] : known_params()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

template <typename T>
T scalar_as(const YAML::Node& v, const std::string& where, const std::string& what, const char* expected) {
  try {
    if (!v.IsScalar()) throw YAML::Exception(YAML::Mark(), "");
    return v.as<T>();
  } catch (const YAML::Exception&) {
    throw ConfigError(where + what + ": expected " + expected + ", found " +
                      (v.IsScalar() ? "'" + v.Scalar() + "'" : v.IsMap() ? std::string("a map") : std::string("a list")));
  }
}

}  // namespace

namespace {

// Reads one item of the `transforms` list: its name, its parameters (checked against the known keys) and the
// values of those parameters. Every error names file:line:column, the transform and the key.
class TransformReader {
 public:
  TransformReader(const YAML::Node& item, const std::string& source) : source_(source) {
    t_.where = where_of(item, source);
    YAML::Node value;
    if (item.IsScalar()) {
      t_.name = item.Scalar();
    } else if (item.IsMap() && item.size() == 1) {
      t_.name = item.begin()->first.Scalar();
      value = item.begin()->second;
    } else {
      throw ConfigError(t_.where + "a transform is its name (shuffle) or a one-key map ({fraction: 0.5}); known: " +
                        known_names());
    }
    const auto known = known_params().find(t_.name);
    if (known == known_params().end())
      throw ConfigError(t_.where + "unknown transform '" + t_.name + "'; known transforms: " + known_names());
    what_ = "transform '" + t_.name + "'";
    enabled_ = read_params(value, known->second);
  }

  // False for `shuffle: false` / `build_pairs: false`, which leave the transform out.
  bool enabled() const { return enabled_; }

  Transform read() {
    if (get("seed")) t_.seed = scalar_as<uint64_t>(get("seed"), at("seed"), what_ + " seed", "a non-negative integer");
    if (t_.name == "fraction" || t_.name == "flip_fraction") read_fraction();
    else if (t_.name == "max_rows") read_max_rows();
    else if (t_.name == "filter") read_filter();
    else if (t_.name == "image_folder") read_image_folder();
    else if (t_.name == "build_pairs") read_build_pairs();
    return t_;
  }

 private:
  // Parameters: a map of them, or a scalar that is the main one ("value", or an on/off switch).
  bool read_params(const YAML::Node& value, const std::set<std::string>& known) {
    if (value && value.IsMap()) {
      for (const auto& kv : value) {
        const std::string key = kv.first.Scalar();
        if (!known.count(key)) {
          std::string names;
          for (const auto& n : known) names += (names.empty() ? "" : ", ") + n;
          throw ConfigError(where_of(kv.first, source_) + what_ + ": unknown key '" + key + "'; known keys: " + names);
        }
        params_[key] = kv.second;
      }
    } else if (value && !value.IsNull()) {
      if (t_.name == "shuffle") return scalar_as<bool>(value, where_of(value, source_), what_, "true or false");
      if (t_.name == "build_pairs")
        return scalar_as<bool>(value, where_of(value, source_), what_, "true, false or a map of its parameters");
      if (!known.count("value")) throw ConfigError(where_of(value, source_) + what_ + ": expected a map of its parameters");
      params_["value"] = value;
    }
    return true;
  }

  YAML::Node get(const std::string& key) { return params_[key]; }
  std::string at(const std::string& key) { return params_[key] ? where_of(params_[key], source_) : t_.where; }
  [[noreturn]] void fail(const std::string& where, const std::string& message) const {
    throw ConfigError(where + what_ + ": " + message);
  }

  void read_fraction() {
    if (!get("value")) fail(t_.where, "missing its value (e.g. {" + t_.name + ": 0.25})");
    if (!get("value").IsScalar()) fail(at("value"), "expected a number between 0 and 1");
    t_.fraction = parse_fraction(get("value").Scalar(), at("value") + what_ + ": ");
  }

  void read_max_rows() {
    if (!get("value")) fail(t_.where, "missing its value (e.g. {max_rows: 1000})");
    t_.max_rows = scalar_as<int64_t>(get("value"), at("value"), what_, "a non-negative integer");
    if (t_.max_rows < 0) fail(at("value"), "expected a non-negative integer");
  }

  void read_filter() {
    if (!get("field")) fail(t_.where, "missing 'field'");
    t_.field = scalar_as<std::string>(get("field"), at("field"), what_ + " field", "a field name");
    int ops = 0;
    for (const char* op : {"equals", "in", "regex"})
      if (get(op)) {
        ++ops;
        t_.op = op;
      }
    if (ops != 1) fail(t_.where, "give exactly one of equals, in, regex");
    const YAML::Node v = get(t_.op);
    if (t_.op == "in") {
      if (!v.IsSequence()) fail(at("in"), "'in' expects a list of values");
      for (const auto& e : v) t_.values.push_back(scalar_as<std::string>(e, where_of(e, source_), what_ + " in", "a scalar"));
    } else {
      t_.values.push_back(scalar_as<std::string>(v, at(t_.op), what_ + " " + t_.op, "a scalar"));
    }
    if (t_.op == "regex") {
      try {
        std::regex re(t_.values[0]);
      } catch (const std::regex_error& e) {
        fail(at("regex"), "invalid regex '" + t_.values[0] + "': " + e.what());
      }
    }
    if (get("not")) t_.negate = scalar_as<bool>(get("not"), at("not"), what_ + " not", "true or false");
  }

  void read_image_folder() {
    if (!get("from") || !get("to")) fail(t_.where, "expected {from: <old prefix>, to: <new prefix>}");
    t_.from = scalar_as<std::string>(get("from"), at("from"), what_ + " from", "a path prefix");
    t_.to = scalar_as<std::string>(get("to"), at("to"), what_ + " to", "a path prefix");
    if (t_.from.empty()) fail(at("from"), "'from' must not be empty");
  }

  void read_build_pairs() {
    if (get("attributes")) {
      if (!get("attributes").IsSequence() || get("attributes").size() == 0)
        fail(at("attributes"), "'attributes' expects a non-empty list of attribute names");
      t_.rule.attributes.clear();
      for (const auto& e : get("attributes"))
        t_.rule.attributes.push_back(scalar_as<std::string>(e, where_of(e, source_), what_ + " attributes", "a name"));
    }
    if (get("min_gap")) t_.rule.min_gap = scalar_as<double>(get("min_gap"), at("min_gap"), what_ + " min_gap", "a number");
    if (t_.rule.min_gap < 0) fail(at("min_gap"), "min_gap must be >= 0");
    if (get("rejected")) {
      const auto v = scalar_as<std::string>(get("rejected"), at("rejected"), what_ + " rejected", "lowest or random");
      if (v != "lowest" && v != "random") fail(at("rejected"), "'rejected' expects lowest or random, found '" + v + "'");
      t_.rule.rejected_random = v == "random";
    }
  }

  const std::string& source_;
  Transform t_;
  std::string what_;
  YAML::Node params_{YAML::NodeType::Map};
  bool enabled_ = true;
};

}  // namespace

std::vector<Transform> parse_transforms(const YAML::Node& list, const std::string& source) {
  std::vector<Transform> out;
  if (!list || list.IsNull()) return out;
  if (!list.IsSequence())
    throw ConfigError(where_of(list, source) + "option 'transforms': expected a list such as [{fraction: 0.5}, shuffle]");
  for (const auto& item : list) {
    TransformReader reader(item, source);
    if (reader.enabled()) out.push_back(reader.read());
  }
  return out;
}

RowKind output_kind(RowKind kind, const std::vector<Transform>& transforms) {
  for (const auto& t : transforms) {
    if (t.name == "flip_fraction" && kind != RowKind::Preference)
      throw ConfigError(t.where + "transform 'flip_fraction' needs preference rows, but gets " + row_kind_name(kind) +
                        " rows" + (kind == RowKind::ScoredCandidates ? " (put build_pairs before it)" : ""));
    if (t.name == "build_pairs") {
      if (kind != RowKind::ScoredCandidates)
        throw ConfigError(t.where + "transform 'build_pairs' needs scored_candidates rows, but gets " +
                          row_kind_name(kind) + " rows");
      kind = RowKind::Preference;
    }
  }
  return kind;
}

// ---- the steps ------------------------------------------------------------------------------------------------

template <typename Row>
void keep_fraction(std::vector<Row>& rows, const Fraction& f, uint64_t seed) {
  const size_t k = f.of(rows.size());
  std::vector<size_t> order = permutation(rows.size(), seed);
  order.resize(k);
  std::sort(order.begin(), order.end());
  std::vector<Row> kept;
  kept.reserve(k);
  for (size_t i : order) kept.push_back(std::move(rows[i]));
  rows = std::move(kept);
}
template void keep_fraction(std::vector<ConversationRow>&, const Fraction&, uint64_t);
template void keep_fraction(std::vector<PreferenceRow>&, const Fraction&, uint64_t);
template void keep_fraction(std::vector<ScoredCandidatesRow>&, const Fraction&, uint64_t);

void flip_fraction(std::vector<PreferenceRow>& rows, const Fraction& f, uint64_t seed, Counters& counts) {
  const size_t k = f.of(rows.size());
  std::vector<size_t> order = permutation(rows.size(), seed);
  for (size_t j = 0; j < k; ++j) flip(rows[order[j]]);
  counts["flipped"] += static_cast<int64_t>(k);
}

namespace {

// Each candidate's sum of the rule's attributes; a missing one is bad data naming the row.
std::vector<double> candidate_scores(const ScoredCandidatesRow& g, const PairRule& rule) {
  std::vector<double> score(g.candidates.size(), 0.0);
  for (size_t i = 0; i < g.candidates.size(); ++i)
    for (const auto& a : rule.attributes) {
      auto it = g.candidates[i].scores.find(a);
      if (it == g.candidates[i].scores.end())
        throw DataError(g.origin.file + ":" + std::to_string(g.origin.row) + ": bad_score: candidates[" +
                        std::to_string(i) + "] has no score for '" + a + "' (build_pairs attributes)");
      score[i] += it->second;
    }
  return score;
}

// The pair of candidates `best` and `rej` of a group, keeping their scores and positions as extra fields.
PreferenceRow pair_of(const ScoredCandidatesRow& g, const std::vector<double>& score, size_t best, size_t rej) {
  PreferenceRow p;
  p.id = g.id;
  p.images = g.images;
  p.prompt = {{"human", g.question}};
  p.chosen.text = g.candidates[best].response;
  p.rejected.text = g.candidates[rej].response;
  p.origin = g.origin;
  p.extra = g.extra;
  nlohmann::json cs = nlohmann::json::object(), rs = nlohmann::json::object();
  for (const auto& [k, v] : g.candidates[best].scores) cs[k] = v;
  for (const auto& [k, v] : g.candidates[rej].scores) rs[k] = v;
  p.extra["chosen_scores"] = cs;
  p.extra["rejected_scores"] = rs;
  p.extra["chosen_index"] = best;
  p.extra["rejected_index"] = rej;
  p.extra["chosen_score"] = score[best];
  p.extra["rejected_score"] = score[rej];
  return p;
}

}  // namespace

std::vector<PreferenceRow> build_pairs(const std::vector<ScoredCandidatesRow>& groups, const PairRule& rule,
                                       uint64_t seed, Counters& counts) {
  std::vector<PreferenceRow> out;
  counts["groups_skipped/too_few_candidates"] += 0;
  counts["groups_skipped/small_spread"] += 0;
  for (const auto& g : groups) {
    if (g.candidates.size() < 2) {
      ++counts["groups_skipped/too_few_candidates"];
      continue;
    }
    const std::vector<double> score = candidate_scores(g, rule);
    // chosen: the earliest candidate with the highest score (the samples' order is the only neutral tie-break).
    const size_t best = static_cast<size_t>(std::max_element(score.begin(), score.end()) - score.begin());
    const auto low = std::min_element(score.begin(), score.end());  // the first minimum, as pandas' idxmin
    const double lowest = *low;
    constexpr double kEps = 1e-9;  // scores are small integers or halves; guard against 0.1-style sums
    if (score[best] - lowest < rule.min_gap - kEps) {
      ++counts["groups_skipped/small_spread"];
      continue;
    }
    if (!rule.rejected_random) {
      out.push_back(pair_of(g, score, best, static_cast<size_t>(low - score.begin())));
      continue;
    }
    std::vector<size_t> pool;
    for (size_t i = 0; i < score.size(); ++i)
      if (score[i] <= score[best] - rule.min_gap + kEps) pool.push_back(i);
    // The draw depends only on the seed and the group's id, so a subset of the groups keeps the same pairs.
    SplitMix64 g_rng(mix_seed(seed, "build_pairs", fnv1a64(g.id)));
    out.push_back(pair_of(g, score, best, pool[g_rng.below(pool.size())]));
  }
  counts["pairs_built"] += static_cast<int64_t>(out.size());
  return out;
}

namespace {

// The field's value as text for filter: strings as they are, anything else as compact JSON.
std::optional<std::string> field_text(const nlohmann::ordered_json& row, const std::string& path) {
  const nlohmann::ordered_json* v = &row;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (v->is_object()) {
      auto it = v->find(key);
      if (it == v->end()) return std::nullopt;
      v = &*it;
    } else if (v->is_array() && !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit)) {
      const size_t i = std::stoul(key);
      if (i >= v->size()) return std::nullopt;
      v = &(*v)[i];
    } else {
      return std::nullopt;
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (v->is_null()) return std::nullopt;
  return v->is_string() ? v->get<std::string>() : v->dump();
}

template <typename Row>
void filter_rows(std::vector<Row>& rows, const Transform& t, Counters& counts) {
  std::optional<std::regex> re;
  if (t.op == "regex") re.emplace(t.values[0]);
  std::vector<Row> kept;
  for (auto& r : rows) {
    const auto text = field_text(to_json(r), t.field);
    bool match = false;
    if (text) {
      if (t.op == "regex") match = std::regex_search(*text, *re);
      else match = std::find(t.values.begin(), t.values.end(), *text) != t.values.end();
    }
    if (match != t.negate) kept.push_back(std::move(r));
  }
  counts["filtered"] += static_cast<int64_t>(rows.size() - kept.size());
  rows = std::move(kept);
}

}  // namespace

bool remap_image_path(std::string& path, const Transform& t) {
  const bool slash = t.from.back() == '/';
  if (path.rfind(t.from, 0) != 0) return false;
  if (!slash && path.size() > t.from.size() && path[t.from.size()] != '/') return false;  // "/a/bc" is not under "/a/b"
  path = t.to + path.substr(t.from.size());
  return true;
}

namespace {

template <typename Row>
void remap_images(std::vector<Row>& rows, const Transform& t, Counters& counts) {
  for (auto& r : rows)
    for (auto& img : r.images)
      if (remap_image_path(img, t)) ++counts["images_remapped"];
}

template <typename Row>
void reorder(std::vector<Row>& rows, const std::vector<size_t>& order) {
  std::vector<Row> out;
  out.reserve(rows.size());
  for (size_t i : order) out.push_back(std::move(rows[i]));
  rows = std::move(out);
}

}  // namespace

void apply_transforms(RowSet& rows, const std::vector<Transform>& transforms, uint64_t default_seed, Counters& counts) {
  output_kind(rows.kind, transforms);  // checks every transform fits the rows it will get
  for (const auto& t : transforms) {
    const uint64_t seed = mix_seed(t.seed.value_or(default_seed), t.name);
    auto each = [&](auto&& fn) {
      switch (rows.kind) {
        case RowKind::Conversation: fn(rows.conversations); break;
        case RowKind::Preference: fn(rows.preferences); break;
        case RowKind::ScoredCandidates: fn(rows.scored); break;
      }
    };
    if (t.name == "fraction") {
      each([&](auto& v) {
        const size_t before = v.size();
        keep_fraction(v, t.fraction, seed);
        counts["dropped_by_fraction"] += static_cast<int64_t>(before - v.size());
      });
    } else if (t.name == "flip_fraction") {
      flip_fraction(rows.preferences, t.fraction, seed, counts);
    } else if (t.name == "shuffle") {
      each([&](auto& v) { reorder(v, permutation(v.size(), seed)); });
    } else if (t.name == "max_rows") {
      each([&](auto& v) {
        if (v.size() > static_cast<size_t>(t.max_rows)) {
          counts["dropped_by_max_rows"] += static_cast<int64_t>(v.size() - t.max_rows);
          v.resize(static_cast<size_t>(t.max_rows));
        }
      });
    } else if (t.name == "filter") {
      each([&](auto& v) { filter_rows(v, t, counts); });
    } else if (t.name == "image_folder") {
      each([&](auto& v) { remap_images(v, t, counts); });
    } else if (t.name == "build_pairs") {
      counts["groups_read"] += static_cast<int64_t>(rows.scored.size());
      rows.preferences = build_pairs(rows.scored, t.rule, seed, counts);
      rows.scored.clear();
      rows.kind = RowKind::Preference;
    }
  }
}

}  // namespace mmr::data
