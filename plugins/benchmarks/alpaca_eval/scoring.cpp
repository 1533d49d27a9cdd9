// AlpacaEval 1.0 scoring and the alpaca_eval_gpt4 annotator's pure pieces (see scoring.h for what is reproduced).
#include "plugins/benchmarks/alpaca_eval/scoring.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <utility>

#include "core/api/error.h"
#include "core/lib/util/numpy_sum.h"
#include "core/lib/util/python_float.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::alpaca_eval {

using benchmarks::jsonl::Json;

// ---- reading and scoring annotations ----

std::vector<Annotation> read_annotations(const std::string& path) {
  const Json doc = benchmarks::jsonl::read_json_file(path, "AlpacaEval annotations file");
  if (!doc.is_array())
    throw DataError(fmt::format("{}: expected a JSON array of annotations (results/<model>/annotations.json), found {}",
                                path, doc.type_name()));
  std::vector<Annotation> rows;
  for (size_t i = 0; i < doc.size(); ++i) {
    const Json& r = doc[i];
    const std::string where = fmt::format("{}: row {} (0-based)", path, i);
    if (!r.is_object()) throw DataError(fmt::format("{}: expected an object, found {}", where, r.type_name()));
    Annotation a;
    a.row = static_cast<int64_t>(i);
    auto text = [&](const char* key, std::string* out) {
      auto it = r.find(key);
      if (it == r.end() || it->is_null()) return false;
      if (!it->is_string()) throw DataError(fmt::format("{}: expected \"{}\" to be a string, found {}", where, key, it->dump()));
      *out = it->get<std::string>();
      return true;
    };
    text("instruction", &a.instruction);
    text("output_1", &a.output_1);
    text("dataset", &a.dataset);
    a.has_output_2 = text("output_2", &a.output_2);
    auto p = r.find("preference");
    if (p == r.end())
      throw DataError(fmt::format("{}: missing key \"preference\" (1: output_1 better, 2: output_2 better, 1.5 or 0: "
                                  "draw, null: unparseable)", where));
    if (p->is_number()) a.preference = p->get<double>();
    else if (!p->is_null())
      throw DataError(fmt::format("{}: expected \"preference\" to be a number or null, found {}", where, p->dump()));
    rows.push_back(std::move(a));
  }
  return rows;
}

namespace {


}  // namespace


double pandas_mean(const std::vector<double>& values) {
  return numpy_sum(values) / static_cast<double>(values.size());
}

// pandas nanops.nansem: sqrt(nanvar(ddof=1)) / sqrt(count), nanvar = sum((avg - x)^2) / (count - 1).
double pandas_sem(const std::vector<double>& values) {
  if (values.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double avg = pandas_mean(values);
  std::vector<double> sq;
  sq.reserve(values.size());
  for (double v : values) sq.push_back((avg - v) * (avg - v));
  const double var = numpy_sum(sq) / static_cast<double>(values.size() - 1);
  return std::sqrt(var) / std::sqrt(static_cast<double>(values.size()));
}

HeadToHead describe_head2head(const std::vector<std::optional<double>>& preferences) {
  HeadToHead h;
  h.n_rows = static_cast<int64_t>(preferences.size());
  std::vector<double> x, discrete;
  for (const auto& p : preferences) {
    if (!p || std::isnan(*p)) {
      ++h.n_dropped;
      continue;
    }
    const double v = *p == 0 ? 1.5 : *p;  // the legacy draw code
    if (v < 1 || v > 2) {
      ++h.n_dropped;
      continue;
    }
    if (*p == 0 || *p == 1.5) ++h.n_draws;
    x.push_back(v - 1);
    discrete.push_back(x.back() > 0.5 ? 1.0 : x.back() < 0.5 ? 0.0 : 0.5);
    h.n_wins += x.back() > 0.5;
    h.n_wins_base += x.back() < 0.5;
  }
  h.n_total = static_cast<int64_t>(x.size());
  if (x.empty())
    throw DataError(fmt::format("no usable preference among {} annotation(s) ({} null, NaN or outside [1, 2])",
                                h.n_rows, h.n_dropped));
  h.win_rate = pandas_mean(x) * 100;
  h.standard_error = pandas_sem(x) * 100;
  h.discrete_win_rate = pandas_mean(discrete) * 100;
  return h;
}

std::optional<int64_t> average_length(const std::vector<std::string>& outputs) {
  if (outputs.empty()) return std::nullopt;
  std::vector<double> lengths;
  for (const auto& s : outputs) {
    int64_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // one per code point: every byte but continuation bytes
    lengths.push_back(static_cast<double>(n));
  }
  return static_cast<int64_t>(pandas_mean(lengths));  // int() truncates toward zero
}

MetricList to_metrics(const HeadToHead& h, std::optional<int64_t> avg_length) {
  MetricList m = {{"win_rate", h.win_rate},
                  {"standard_error", h.standard_error},
                  {"discrete_win_rate", h.discrete_win_rate},
                  {"n_wins", static_cast<double>(h.n_wins)},
                  {"n_wins_base", static_cast<double>(h.n_wins_base)},
                  {"n_draws", static_cast<double>(h.n_draws)},
                  {"n_total", static_cast<double>(h.n_total)},
                  {"n_rows", static_cast<double>(h.n_rows)},
                  {"n_dropped", static_cast<double>(h.n_dropped)}};
  if (avg_length) m.push_back({"avg_length", static_cast<double>(*avg_length)});
  return m;
}

MetricList score_file(const std::string& annotations_path) {
  const std::vector<Annotation> rows = read_annotations(annotations_path);
  std::vector<std::optional<double>> preferences;
  std::vector<std::string> outputs;
  bool all_outputs = true;
  for (const auto& r : rows) {
    preferences.push_back(r.preference);
    all_outputs = all_outputs && r.has_output_2;
    if (r.has_output_2) outputs.push_back(r.output_2);
  }
  HeadToHead h;
  try {
    h = describe_head2head(preferences);
  } catch (const DataError& e) {
    throw DataError(annotations_path + ": " + e.what());
  }
  return to_metrics(h, all_outputs ? average_length(outputs) : std::nullopt);
}

// ---- annotator config and prompt ----

AnnotatorConfig read_annotator_config(const std::string& folder) {
  namespace fs = std::filesystem;
  fs::path dir(folder);
  if (!dir.has_filename()) dir = dir.parent_path();  // "…/alpaca_eval_gpt4/": its parent is the configs folder
  const fs::path yaml_path = dir / "configs.yaml";
  if (!fs::is_regular_file(yaml_path))
    throw IoError(fmt::format("annotator config '{}' not found (give the folder evaluators_configs/alpaca_eval_gpt4 "
                              "holding configs.yaml)", yaml_path.string()));
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(yaml_path.string());
  } catch (const YAML::Exception& e) {
    throw DataError(fmt::format("{}: {}", yaml_path.string(), e.what()));
  }
  const std::string where = yaml_path.string() + ": ";
  if (!doc.IsMap() || doc.size() != 1)
    throw DataError(where + "expected one top-level key, the annotator's name (e.g. alpaca_eval_gpt4)");
  // Checked before use: yaml-cpp throws its own exceptions for a map key or a subscript of a scalar.
  if (!doc.begin()->first.IsScalar() || !doc.begin()->second.IsMap())
    throw DataError(where + "expected the annotator's name (e.g. alpaca_eval_gpt4) and a map of its settings");
  AnnotatorConfig c;
  c.name = doc.begin()->first.Scalar();
  const YAML::Node body = doc.begin()->second;
  auto scalar = [&](const YAML::Node& parent, const char* key, const std::string& path) {
    const YAML::Node v = parent[key];
    if (!v || !v.IsScalar()) throw DataError(fmt::format("{}missing or non-scalar key '{}'", where, path));
    return v;
  };
  const std::string tmpl = scalar(body, "prompt_template", c.name + ".prompt_template").as<std::string>();
  c.completion_parser = scalar(body, "fn_completion_parser", c.name + ".fn_completion_parser").as<std::string>();
  if (c.completion_parser != "ranking_parser")
    throw DataError(fmt::format("{}fn_completion_parser '{}' is not implemented; only 'ranking_parser' "
                                "(alpaca_eval_gpt4) is", where, c.completion_parser));
  const YAML::Node kwargs = body["completions_kwargs"];
  if (!kwargs || !kwargs.IsMap()) throw DataError(where + "missing map '" + c.name + ".completions_kwargs'");
  try {
    c.model_name = scalar(kwargs, "model_name", "completions_kwargs.model_name").as<std::string>();
    c.temperature = scalar(kwargs, "temperature", "completions_kwargs.temperature").as<double>();
    c.max_tokens = scalar(kwargs, "max_tokens", "completions_kwargs.max_tokens").as<int64_t>();
  } catch (const YAML::BadConversion& e) {
    throw DataError(where + "completions_kwargs: " + e.what());
  }
  // The template path is relative to evaluators_configs/, the folder above the annotator's.
  const fs::path template_path = dir.parent_path() / tmpl;
  c.prompt_template = benchmarks::jsonl::read_text_file(template_path.string(), "AlpacaEval prompt template");
  return c;
}

std::vector<std::string> template_fields(std::string_view tmpl) {
  // re.findall(r"{([^ \s]+?)}"): from each '{', the shortest run of non-whitespace characters up to a '}'.
  std::vector<std::string> fields;
  size_t i = 0;
  while (i < tmpl.size()) {
    if (tmpl[i] != '{') {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < tmpl.size() && tmpl[j] != '}' && !is_python_space(tmpl[j])) ++j;
    if (j < tmpl.size() && tmpl[j] == '}' && j > i + 1) {
      fields.emplace_back(tmpl.substr(i + 1, j - i - 1));
      i = j + 1;
    } else {
      ++i;
    }
  }
  return fields;
}

std::string fill_template(std::string_view tmpl, const std::vector<std::pair<std::string, std::string>>& values) {
  std::string prompt(tmpl);
  for (const std::string& field : template_fields(tmpl)) {
    const std::string* value = nullptr;
    for (const auto& [k, v] : values)
      if (k == field) value = &v;
    if (!value) throw DataError(fmt::format("the prompt template has a field '{{{}}}' that the annotator does not fill", field));
    const std::string slot = "{" + field + "}";
    const size_t at = prompt.find(slot);
    if (at != std::string::npos) prompt.replace(at, slot.size(), *value);
  }
  return prompt;
}

std::vector<ChatMessage> prompt_to_chatml(std::string_view prompt) {
  static constexpr std::string_view kStart = "<|im_start|>", kEnd = "<|im_end|>";
  const std::string_view p = python_strip(prompt);
  if (p.substr(0, kStart.size()) != kStart || p.size() < kEnd.size() || p.substr(p.size() - kEnd.size()) != kEnd)
    throw DataError("the annotator prompt must start with <|im_start|> and end with <|im_end|>");
  std::vector<ChatMessage> messages;
  size_t pos = kStart.size();
  while (true) {
    const size_t next = p.find(kStart, pos);
    const std::string_view piece = p.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
    const size_t nl = piece.find('\n');
    if (nl == std::string_view::npos)  // Python's split("\n", 1)[1] raises IndexError
      throw DataError("a message of the annotator prompt has no newline after its role");
    std::string_view content = piece.substr(nl + 1);
    content = content.substr(0, content.find(kEnd));
    messages.push_back({std::string(python_strip(piece.substr(0, nl))), std::string(python_strip(content))});
    if (next == std::string_view::npos) break;
    pos = next + kStart.size();
  }
  return messages;
}

// ---- Python's random.Random(str) ----

namespace {

// SHA-512 from OpenSSL (a Debian package the HTTP judge already links): Python's random.seed(str) hashes the seed
// with it.
std::array<uint8_t, 64> sha512(std::string_view data) {
  std::array<uint8_t, 64> out{};
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &n, EVP_sha512(), nullptr) != 1 || n != out.size())
    throw Error("OpenSSL's SHA-512 failed");
  return out;
}

// MT19937 as CPython's _randommodule.c: init_genrand, init_by_array, genrand_uint32, random() (genrand_res53).
class PythonMt {
 public:
  explicit PythonMt(const std::vector<uint32_t>& key) { init_by_array(key); }

  double random() {
    const uint32_t a = next() >> 5, b = next() >> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
  }

 private:
  static constexpr int kN = 624, kM = 397;

  void init_genrand(uint32_t s) {
    mt_[0] = s;
    for (int i = 1; i < kN; ++i) mt_[i] = 1812433253U * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
    index_ = kN;
  }
  void init_by_array(const std::vector<uint32_t>& key) {
    init_genrand(19650218U);
    size_t i = 1, j = 0;
    const size_t n_key = key.size();
    for (size_t k = std::max<size_t>(kN, n_key); k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525U)) + key[j] + static_cast<uint32_t>(j);
      ++i;
      ++j;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
      if (j >= n_key) j = 0;
    }
    for (size_t k = kN - 1; k > 0; --k) {
      mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941U)) - static_cast<uint32_t>(i);
      ++i;
      if (i >= kN) {
        mt_[0] = mt_[kN - 1];
        i = 1;
      }
    }
    mt_[0] = 0x80000000U;
  }
  uint32_t next() {
    static constexpr uint32_t kUpper = 0x80000000U, kLower = 0x7fffffffU, kMatrix = 0x9908b0dfU;
    if (index_ >= kN) {
      for (int k = 0; k < kN; ++k) {
        const uint32_t y = (mt_[k] & kUpper) | (mt_[(k + 1) % kN] & kLower);
        mt_[k] = mt_[(k + kM) % kN] ^ (y >> 1) ^ ((y & 1U) ? kMatrix : 0U);
      }
      index_ = 0;
    }
    uint32_t y = mt_[index_++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
  }

  std::array<uint32_t, kN> mt_{};
  int index_ = kN;
};

}  // namespace

std::string sha512_hex(std::string_view bytes) {
  std::string hex;
  for (uint8_t b : sha512(bytes)) hex += fmt::format("{:02x}", b);
  return hex;
}

double python_random_for_str_seed(std::string_view seed) {
  // random.seed(a, version=2) for a str: a = int.from_bytes(a.encode() + sha512(a.encode()).digest(), "big"); the
  // C seeding then takes |a| as 32-bit words, least significant first, as many as its bit length needs.
  std::string bytes(seed);
  for (uint8_t b : sha512(seed)) bytes.push_back(static_cast<char>(b));
  size_t first = 0;  // leading zero bytes do not count towards the bit length
  while (first < bytes.size() && bytes[first] == '\0') ++first;
  std::vector<uint32_t> key;
  for (size_t end = bytes.size(); end > first;) {
    const size_t begin = end >= first + 4 ? end - 4 : first;
    uint32_t word = 0;
    for (size_t i = begin; i < end; ++i) word = (word << 8) | static_cast<uint8_t>(bytes[i]);
    key.push_back(word);
    end = begin;
  }
  if (key.empty()) key.push_back(0);  // a = 0: CPython uses one zero word
  return PythonMt(key).random();
}

bool is_switched_outputs(std::string_view instruction, std::string_view seed) {
  const std::string s = "is_switched_outputs" + std::string(instruction) + std::string(seed);
  // choices([False, True]) with k = 1: population[floor(random() * 2.0)].
  return std::floor(python_random_for_str_seed(s) * 2.0) == 1.0;
}

// ---- ranking_parser: a Python literal reader ----

namespace {

struct PyValue {
  enum class Kind { None, Bool, Int, Float, Str, Bytes, List, Tuple, Set, Dict } kind = Kind::None;
  double number = 0;  // Bool (0/1), Int, Float
  std::string text;   // Str
  std::vector<PyValue> items;                         // List, Tuple, Set
  std::vector<std::pair<PyValue, PyValue>> entries;   // Dict, in insertion order (a repeated key: last value wins)
  bool is_number() const { return kind == Kind::Bool || kind == Kind::Int || kind == Kind::Float; }
  bool hashable() const {
    if (kind == Kind::List || kind == Kind::Dict || kind == Kind::Set) return false;
    for (const auto& i : items)
      if (!i.hashable()) return false;
    return true;
  }
};

struct SyntaxError {};

// Recursive descent over the literal subset named in scoring.h. Newlines are allowed inside brackets only (implicit
// line joining); a top-level expression may be followed by whitespace, newlines and comments.
class LiteralParser {
 public:
  explicit LiteralParser(std::string_view s) : s_(s) {}

  PyValue parse() {
    skip(true);
    PyValue v = expression();
    if (peek() == ',') {  // a bare tuple: "1, 2"
      PyValue t;
      t.kind = PyValue::Kind::Tuple;
      t.items.push_back(std::move(v));
      while (peek() == ',') {
        ++i_;
        skip(false);
        if (i_ >= s_.size() || s_[i_] == '\n' || s_[i_] == '\r') break;
        t.items.push_back(expression());
      }
      v = std::move(t);
    }
    skip(true);
    if (i_ != s_.size()) throw SyntaxError{};
    return v;
  }

 private:
  // Whitespace, comments and backslash continuations; newlines too when `newlines` (inside brackets, at the end).
  void skip(bool newlines) {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\f') ++i_;
      else if ((c == '\n' || c == '\r') && newlines) ++i_;
      else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n' && s_[i_] != '\r') ++i_;
      } else if (c == '\\' && i_ + 1 < s_.size() && (s_[i_ + 1] == '\n' || s_[i_ + 1] == '\r')) {
        i_ += 2;
        if (s_[i_ - 1] == '\r' && i_ < s_.size() && s_[i_] == '\n') ++i_;
      } else break;
    }
  }
  char peek() {
    skip(depth_ > 0);
    return i_ < s_.size() ? s_[i_] : '\0';
  }
  void expect(char c) {
    if (peek() != c) throw SyntaxError{};
    ++i_;
  }

  PyValue expression() {
    const char c = peek();
    if (c == '[') return sequence('[', ']', PyValue::Kind::List);
    if (c == '(') return sequence('(', ')', PyValue::Kind::Tuple);
    if (c == '{') return braces();
    if (c == '+' || c == '-') {
      ++i_;
      PyValue v = expression();
      if (!v.is_number()) throw SyntaxError{};  // literal_eval: a sign only before a number
      if (v.kind == PyValue::Kind::Bool) v.kind = PyValue::Kind::Int;
      if (c == '-') v.number = -v.number;
      return v;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return number();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') return name_or_string();
    if (c == '\'' || c == '"') return strings("");
    throw SyntaxError{};
  }

  PyValue sequence(char open, char close, PyValue::Kind kind) {
    expect(open);
    ++depth_;
    PyValue v;
    v.kind = kind;
    bool comma = false;
    while (peek() != close) {
      v.items.push_back(expression());
      if (peek() == ',') {
        ++i_;
        comma = true;
      } else {
        break;
      }
    }
    expect(close);
    --depth_;
    // "(x)" is x, not a tuple.
    if (kind == PyValue::Kind::Tuple && v.items.size() == 1 && !comma) return std::move(v.items[0]);
    return v;
  }

  PyValue braces() {
    expect('{');
    ++depth_;
    PyValue v;
    v.kind = PyValue::Kind::Dict;
    if (peek() != '}') {
      PyValue first = expression();
      if (peek() == ':') {
        do {
          if (v.entries.empty()) {
            ++i_;  // the ':' after `first`
            v.entries.emplace_back(std::move(first), expression());
          } else {
            PyValue key = expression();
            expect(':');
            v.entries.emplace_back(std::move(key), expression());
          }
          if (!v.entries.back().first.hashable()) throw SyntaxError{};  // TypeError: unhashable type
          if (peek() != ',') break;
          ++i_;
        } while (peek() != '}');
      } else {
        v.kind = PyValue::Kind::Set;
        v.items.push_back(std::move(first));
        while (peek() == ',') {
          ++i_;
          if (peek() == '}') break;
          v.items.push_back(expression());
        }
        for (const auto& item : v.items)
          if (!item.hashable()) throw SyntaxError{};
      }
    }
    expect('}');
    --depth_;
    return v;
  }

  PyValue number() {
    const size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' || s_[i_] == '.' ||
                              ((s_[i_] == '+' || s_[i_] == '-') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E'))))
      ++i_;
    const std::string_view tok = s_.substr(start, i_ - start);
    PyValue v;
    const bool is_float = tok.find_first_of(".eE") != std::string_view::npos && tok.substr(0, 2) != "0x" &&
                          tok.substr(0, 2) != "0X";
    if (is_float) {
      // Python's float literal syntax is float()'s minus the words, signs and surrounding spaces.
      for (char ch : tok)
        if (std::isalpha(static_cast<unsigned char>(ch)) && ch != 'e' && ch != 'E') throw SyntaxError{};
      const auto f = python_float(tok);
      if (!f) throw SyntaxError{};
      v.kind = PyValue::Kind::Float;
      v.number = *f;
      return v;
    }
    std::string digits;
    int base = 10;
    std::string_view body = tok;
    if (tok.size() > 2 && tok[0] == '0' && std::string_view("xXoObB").find(tok[1]) != std::string_view::npos) {
      base = (tok[1] == 'x' || tok[1] == 'X') ? 16 : (tok[1] == 'o' || tok[1] == 'O') ? 8 : 2;
      body = tok.substr(2);
      if (!body.empty() && body[0] == '_') body.remove_prefix(1);
    }
    for (size_t k = 0; k < body.size(); ++k) {
      if (body[k] == '_') {
        if (k == 0 || k + 1 == body.size() || body[k + 1] == '_') throw SyntaxError{};
        continue;
      }
      digits.push_back(body[k]);
    }
    if (digits.empty()) throw SyntaxError{};
    if (base == 10 && digits.size() > 1 && digits[0] == '0' && digits.find_first_not_of('0') != std::string::npos)
      throw SyntaxError{};  // "01": leading zeros in a decimal integer
    double value = 0;
    for (char ch : digits) {
      const int d = std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0'
                    : std::isalpha(static_cast<unsigned char>(ch)) ? ascii_lower(ch) - 'a' + 10 : 99;
      if (d >= base) throw SyntaxError{};
      value = value * base + d;  // exact for the small integers a rank can equal
    }
    v.kind = PyValue::Kind::Int;
    v.number = value;
    return v;
  }

  PyValue name_or_string() {
    const size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
    const std::string_view word = s_.substr(start, i_ - start);
    if (i_ < s_.size() && (s_[i_] == '\'' || s_[i_] == '"') && word.size() <= 2) {
      const std::string prefix = ascii_lower(word);
      if (prefix == "u" || prefix == "r" || prefix == "b" || prefix == "br" || prefix == "rb") return strings(prefix);
      throw SyntaxError{};  // f-strings are not literals
    }
    PyValue v;
    if (word == "True" || word == "False") {
      v.kind = PyValue::Kind::Bool;
      v.number = word == "True";
    } else if (word != "None") {
      throw SyntaxError{};  // a name: literal_eval raises ValueError
    }
    return v;
  }

  // One or more adjacent string literals (implicit concatenation); mixing bytes and str is a SyntaxError.
  PyValue strings(std::string prefix) {
    PyValue v;
    v.kind = prefix.find('b') != std::string::npos ? PyValue::Kind::Bytes : PyValue::Kind::Str;
    bool first = true;
    while (true) {
      if (!first) {
        peek();  // skips what may separate adjacent literals
        size_t k = i_;
        while (k < s_.size() && k - i_ < 2 && std::isalpha(static_cast<unsigned char>(s_[k]))) ++k;
        if (k >= s_.size() || (s_[k] != '\'' && s_[k] != '"')) break;
        prefix = ascii_lower(s_.substr(i_, k - i_));
        if (!(prefix.empty() || prefix == "u" || prefix == "r" || prefix == "b" || prefix == "br" || prefix == "rb"))
          break;
        if ((prefix.find('b') != std::string::npos) != (v.kind == PyValue::Kind::Bytes)) throw SyntaxError{};
        i_ = k;
      }
      first = false;
      v.text += string_literal(prefix.find('r') != std::string::npos);
    }
    return v;
  }

  std::string string_literal(bool raw) {
    const char q = s_[i_];
    const bool triple = s_.substr(i_, 3) == std::string(3, q);
    i_ += triple ? 3 : 1;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) throw SyntaxError{};
      const char c = s_[i_];
      if (triple ? s_.substr(i_, 3) == std::string(3, q) : c == q) {
        i_ += triple ? 3 : 1;
        return out;
      }
      if (!triple && (c == '\n' || c == '\r')) throw SyntaxError{};
      if (c != '\\') {
        out.push_back(c);
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) throw SyntaxError{};
      const char e = s_[i_ + 1];
      if (raw) {  // a raw string keeps the backslash; it still cannot end the string
        out.push_back(c);
        out.push_back(e);
        i_ += 2;
        continue;
      }
      i_ += 2;
      switch (e) {
        case '\n': break;  // line continuation inside the string
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        case 'r': out.push_back('\r'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'v': out.push_back('\v'); break;
        case 'x': case 'u': case 'U': case 'N': case '0': case '1': case '2': case '3': case '4': case '5': case '6':
        case '7':
          throw SyntaxError{};  // numeric and named escapes: not needed for a ranking; treated as unparseable
        default:  // an unknown escape keeps its backslash
          out.push_back('\\');
          out.push_back(e);
      }
    }
  }

  std::string_view s_;
  size_t i_ = 0;
  int depth_ = 0;
};

// d[key] for a str key: the value of the last entry whose key is that str (a repeated key's last value wins).
const PyValue* dict_get(const PyValue& d, std::string_view key) {
  const PyValue* found = nullptr;
  for (const auto& [k, v] : d.entries)
    if (k.kind == PyValue::Kind::Str && k.text == key) found = &v;
  return found;
}

}  // namespace

std::optional<double> parse_ranking(std::string_view reply) {
  // literal_eval strips leading spaces and tabs itself.
  while (!reply.empty() && (reply.front() == ' ' || reply.front() == '\t')) reply.remove_prefix(1);
  PyValue v;
  try {
    v = LiteralParser(reply).parse();
  } catch (const SyntaxError&) {
    return std::nullopt;
  }
  // [c for c in ordered_completions if c["model"] == "model_1"][0]["rank"], then `assert rank in [1, 2]`.
  if (v.kind != PyValue::Kind::List && v.kind != PyValue::Kind::Tuple) return std::nullopt;
  const PyValue* chosen = nullptr;
  for (const PyValue& c : v.items) {
    if (c.kind != PyValue::Kind::Dict) return std::nullopt;
    const PyValue* model = dict_get(c, "model");
    if (!model) return std::nullopt;  // KeyError
    if (!chosen && model->kind == PyValue::Kind::Str && model->text == "model_1") chosen = &c;
  }
  if (!chosen) return std::nullopt;  // IndexError
  const PyValue* rank = dict_get(*chosen, "rank");
  if (!rank || !rank->is_number() || (rank->number != 1 && rank->number != 2)) return std::nullopt;
  return rank->number;
}

// ---- one pair ----

PairRequest build_pair_request(const AnnotatorConfig& config, const std::string& instruction,
                               const std::string& output_1, const std::string& output_2, std::string_view seed) {
  PairRequest r;
  if (output_1 == output_2) {
    r.draw = true;
    return r;
  }
  r.switched = is_switched_outputs(instruction, seed);
  const std::string& first = r.switched ? output_2 : output_1;
  const std::string& second = r.switched ? output_1 : output_2;
  const std::string prompt = fill_template(config.prompt_template,
                                           {{"instruction", instruction}, {"output_1", first}, {"output_2", second}});
  const std::vector<ChatMessage> messages = prompt_to_chatml(prompt);
  const bool with_system = messages.size() == 2 && messages[0].role == "system" && messages[1].role == "user";
  const bool user_only = messages.size() == 1 && messages[0].role == "user";
  if (!with_system && !user_only)
    throw DataError(fmt::format("the annotator prompt for instruction '{}' splits into {} chat message(s), not a "
                                "system and a user message (does an output contain <|im_start|>?)",
                                instruction.substr(0, 80), messages.size()));
  if (with_system) r.system = messages[0].content;
  r.user = messages.back().content;
  return r;
}

std::optional<double> preference_from_reply(const PairRequest& request, std::string_view reply) {
  if (request.draw) return 1.5;
  const std::optional<double> p = parse_ranking(reply);
  if (!p) return std::nullopt;
  return request.switched ? 3 - *p : *p;
}

std::string annotations_json(const std::vector<AnnotationRecord>& records) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& r : records) {
    nlohmann::ordered_json row;
    row["instruction"] = r.instruction;
    row["output_1"] = r.output_1;
    row["generator_1"] = r.generator_1;
    row["dataset"] = r.dataset;
    row["output_2"] = r.output_2;
    row["generator_2"] = r.generator_2;
    row["annotator"] = r.annotator;
    row["preference"] = r.preference ? nlohmann::ordered_json(*r.preference) : nlohmann::ordered_json(nullptr);
    row["raw_completion"] = r.raw_completion ? nlohmann::ordered_json(*r.raw_completion) : nlohmann::ordered_json(nullptr);
    rows.push_back(std::move(row));
  }
  return rows.dump(2) + "\n";
}


// ---- evaluating a model ----

std::vector<EvalRecord> read_eval_set(const std::string& path) {
  const Json doc = benchmarks::jsonl::read_json_file(path, "AlpacaEval instructions file");
  if (!doc.is_array())
    throw DataError(fmt::format("{}: expected a JSON array of {{instruction, output, ...}} records, found {}", path,
                                doc.type_name()));
  std::vector<EvalRecord> records;
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < doc.size(); ++i) {
    const Json& r = doc[i];
    const std::string where = fmt::format("{}: row {} (0-based)", path, i);
    if (!r.is_object()) throw DataError(fmt::format("{}: expected an object, found {}", where, r.type_name()));
    auto text = [&](const char* key, bool required) -> std::string {
      auto it = r.find(key);
      if (it == r.end() || it->is_null()) {
        if (required) throw DataError(fmt::format("{}: missing key \"{}\"", where, key));
        return "";
      }
      if (!it->is_string()) throw DataError(fmt::format("{}: expected \"{}\" to be a string, found {}", where, key, it->dump()));
      return it->get<std::string>();
    };
    EvalRecord e{text("dataset", false), text("instruction", true), text("output", true), text("generator", false)};
    auto [it, inserted] = seen.emplace(e.instruction, i);
    if (!inserted)
      throw DataError(fmt::format("{}: instruction repeats row {} (rows are matched by instruction)", where, it->second));
    records.push_back(std::move(e));
  }
  return records;
}

std::string model_outputs_json(const std::vector<EvalRecord>& records) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& r : records)
    rows.push_back({{"dataset", r.dataset}, {"instruction", r.instruction}, {"output", r.output}, {"generator", r.generator}});
  return rows.dump(2) + "\n";
}

Annotated annotate(const AnnotatorConfig& config, const std::vector<EvalRecord>& reference,
                   const std::vector<EvalRecord>& outputs, const AskJudge& ask) {
  if (reference.size() != outputs.size())
    throw InternalError(fmt::format("annotate: {} references for {} outputs", reference.size(), outputs.size()));
  Annotated a;
  std::vector<PairRequest> pairs, to_send;
  for (size_t i = 0; i < reference.size(); ++i) {
    if (reference[i].instruction != outputs[i].instruction)
      throw InternalError("annotate: the outputs are not in the references' order");
    pairs.push_back(build_pair_request(config, reference[i].instruction, reference[i].output, outputs[i].output));
    if (!pairs.back().draw) to_send.push_back(pairs.back());
  }
  const std::vector<std::string> replies = to_send.empty() ? std::vector<std::string>() : ask(to_send);
  if (replies.size() != to_send.size())
    throw InternalError(fmt::format("annotate: {} judge replies for {} requests", replies.size(), to_send.size()));
  size_t next = 0;
  for (size_t i = 0; i < pairs.size(); ++i) {
    AnnotationRecord r{reference[i].instruction, reference[i].output, reference[i].generator, reference[i].dataset,
                       outputs[i].output,        outputs[i].generator, config.name, std::nullopt, std::nullopt};
    if (pairs[i].draw) {
      ++a.n_identical;
      r.preference = 1.5;
    } else {
      ++a.n_judged;
      r.raw_completion = replies[next];
      r.preference = preference_from_reply(pairs[i], replies[next]);
      a.n_unparseable += !r.preference;
      ++next;
    }
    a.records.push_back(std::move(r));
  }
  return a;
}

}  // namespace mmr::alpaca_eval
