// AlpacaEval 1.0 scoring, torch-free: the win rate and standard error of an annotations file, as alpaca_eval
// (tatsu-lab/alpaca_eval) computes them, and the pure pieces of its `alpaca_eval_gpt4` annotator (prompt, position
// randomisation, ranking parsing). The facts and formulas are those written down in
// shared/benchmarks/PROVENANCE.md, section "AlpacaEval 1.0", from alpaca_eval @ cd543a1 (and 94ecb30, the same on
// every point used here).
//
// Annotations file (results/<model>/annotations.json): one JSON array of objects {"instruction", "output_1"
// (the baseline, text-davinci-003), "output_2" (the evaluated model), "preference", ...}, as pandas' to_json writes
// it. "preference": 1 = output_1 (the baseline) is better, 2 = output_2 (the model) is better, 1.5 = draw (older
// files, e.g. the 2023 ones, store a draw as 0), null = the judge's reply could not be parsed.
//
// Arithmetic (metrics/helpers.py describe_head2head; the 2023 pairwise_to_winrate is equivalent):
//   * a preference of 0 becomes 1.5; null, NaN and anything outside [1, 2] is dropped (n_dropped);
//   * x_i = p_i - 1 in [0, 1]; win_rate = 100 * mean(x); standard_error = 100 * sem(x), pandas' Series.sem():
//     the sample standard deviation with ddof = 1 over sqrt(n), no bootstrap;
//   * n_wins = #(x > 0.5), n_wins_base = #(x < 0.5), n_draws = #(preference == 1.5 or 0), n_total = n;
//   * discrete_win_rate: the same mean after rounding each x to 0 or 1, an exact 0.5 kept as a draw;
//   * avg_length = int(mean Python len() of output_2), over every row (the model's outputs), in code points.
// Sums are numpy's (pairwise, blocks of 8), as pandas' mean/var use them; var = sum((mean - x)^2) / (n - 1).
//
// Stricter than the official code: a row that is not an object, a missing "preference", or a preference that is
// neither a number nor null is a DataError naming the file and the row (pandas would fail later or silently
// coerce). JSON has no NaN: Python's `NaN` token (json.dump of a float NaN) is not accepted; pandas writes null.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/lib/util/numpy_sum.h"

#include "core/api/metrics.h"

namespace mmr::alpaca_eval {

struct Annotation {
  int64_t row = 0;  // 0-based position in the file's array
  std::string instruction, output_1, output_2, dataset;
  bool has_output_2 = false;
  std::optional<double> preference;  // nullopt: null in the file
};

// Throws mmr::IoError if the file cannot be read, mmr::DataError naming the file and the row otherwise.
std::vector<Annotation> read_annotations(const std::string& path);

struct HeadToHead {
  double win_rate = 0, standard_error = 0, discrete_win_rate = 0;  // percent; standard_error NaN when n_total < 2
  int64_t n_wins = 0, n_wins_base = 0, n_draws = 0, n_total = 0;
  int64_t n_rows = 0, n_dropped = 0;  // every row; rows whose preference is null, NaN or outside [1, 2]
};

// describe_head2head over the preferences (nullopt = null). Throws DataError when no preference is left.
HeadToHead describe_head2head(const std::vector<std::optional<double>>& preferences);

// int(mean(len(output))) with Python's len (Unicode code points of UTF-8 text); nullopt when `outputs` is empty.
std::optional<int64_t> average_length(const std::vector<std::string>& outputs);

// Names: win_rate, standard_error, discrete_win_rate, n_wins, n_wins_base, n_draws, n_total, n_rows, n_dropped,
// and avg_length when given (the leaderboard's columns, plus the two counts).
mmr::MetricList to_metrics(const HeadToHead& h, std::optional<int64_t> avg_length);
// Reads and scores an annotations file; avg_length only when every row has "output_2".
mmr::MetricList score_file(const std::string& annotations_path);

// pandas' mean / sem below are built on numpy's float64 sum (core/lib/util/numpy_sum.h).
using ::mmr::numpy_sum;  // core/lib/util/numpy_sum.h
double pandas_mean(const std::vector<double>& values);
double pandas_sem(const std::vector<double>& values);  // ddof = 1; NaN for fewer than 2 values

// ---- the alpaca_eval_gpt4 annotator ----

// An evaluators_configs/<name>/configs.yaml with the prompt template it names (relative to evaluators_configs/).
struct AnnotatorConfig {
  std::string name;             // "alpaca_eval_gpt4"
  std::string prompt_template;  // the template's text
  std::string model_name;       // completions_kwargs.model_name, "gpt-4"
  double temperature = 0;       // completions_kwargs.temperature
  int64_t max_tokens = 0;       // completions_kwargs.max_tokens
  std::string completion_parser;  // fn_completion_parser: only "ranking_parser" is implemented
};
// `folder`: evaluators_configs/alpaca_eval_gpt4. Throws IoError / DataError naming the file and the key.
AnnotatorConfig read_annotator_config(const std::string& folder);

// The fields of a template, as utils.make_prompts finds them (re.findall(r"{([^ \s]+?)}", template)), in order.
std::vector<std::string> template_fields(std::string_view tmpl);
// make_prompts' filling: for each field in template order, the first occurrence of "{field}" in the prompt built
// so far is replaced by the raw value (str.replace(..., 1), not str.format: braces in outputs stay as they are).
// A field without a value is a DataError.
std::string fill_template(std::string_view tmpl, const std::vector<std::pair<std::string, std::string>>& values);

struct ChatMessage {
  std::string role, content;
};
// _prompt_to_chatml: the stripped prompt is split at "<|im_start|>"; each piece's first line (stripped) is the
// role, and the text after it up to "<|im_end|>", stripped, is the content. The prompt must start with
// "<|im_start|>" and end with "<|im_end|>" once stripped (DataError otherwise).
std::vector<ChatMessage> prompt_to_chatml(std::string_view prompt);

// Python's random.Random(seed).random() for a str seed (version-2 seeding: the seed's UTF-8 bytes followed by
// their SHA-512 digest, read as one big-endian integer, fed to MT19937's init_by_array), and the SHA-512 it needs.
double python_random_for_str_seed(std::string_view seed);
std::string sha512_hex(std::string_view bytes);
// Whether the annotator shows the pair swapped: random.Random("is_switched_outputs" + instruction + seed)
// .choices([False, True])[0], i.e. floor(random() * 2) == 1. `seed` is the annotator's seed, "0" by default.
bool is_switched_outputs(std::string_view instruction, std::string_view seed = "0");

// ranking_parser: the reply read as a Python literal (ast.literal_eval) must be a list or tuple whose elements are
// all dicts with a "model" key; the "rank" of the first one whose model is "model_1" is the preference if it
// equals 1 or 2. Anything else (a syntax error, a missing key, another rank) gives nullopt, where the official
// parser logs the error and returns NaN. The literal syntax read is the part of Python's a ranking can use:
// lists, tuples, dicts, sets, str (quotes, triple quotes, u/r prefixes, escapes, implicit concatenation),
// int/float with a sign, True/False/None, comments and line continuations; bytes, complex numbers and
// unusual forms are treated as unparseable.
std::optional<double> parse_ranking(std::string_view reply);

// One pair as the annotator handles it.
struct PairRequest {
  bool draw = false;      // output_1 == output_2: preference 1.5 without asking the judge
  bool switched = false;  // the judge sees output_2 as model_1
  std::string system, user;  // the judge's messages (empty for a draw)
};
// The request for (instruction, output_1 = baseline, output_2 = model). The filled prompt must give a system
// message and one user message, or just one user message (DataError naming the instruction otherwise: an output
// containing "<|im_start|>" would split it).
PairRequest build_pair_request(const AnnotatorConfig& config, const std::string& instruction,
                               const std::string& output_1, const std::string& output_2, std::string_view seed = "0");
// The preference of a judged pair in the file's orientation: the parsed rank, then 3 - p when the pair was shown
// switched. nullopt when the reply does not parse.
std::optional<double> preference_from_reply(const PairRequest& request, std::string_view reply);

// One row of the annotations file the annotator writes.
struct AnnotationRecord {
  std::string instruction, output_1, generator_1, dataset, output_2, generator_2, annotator;
  std::optional<double> preference;           // null when unparseable
  std::optional<std::string> raw_completion;  // the judge's reply; null for a draw decided without a judge
};
// The file's text: a JSON array in json.dump(indent=2) layout, non-ASCII kept; integral preferences as numbers
// (1.0, 1.5, 2.0).
std::string annotations_json(const std::vector<AnnotationRecord>& records);


// ---- evaluating a model ----

// One record of the evaluation set (alpaca_eval_v1_eval_set.json, the HF dataset tatsu-lab/alpaca_eval "eval":
// the 805 instructions with text-davinci-003's reference outputs) or of a model outputs file: {dataset,
// instruction, output, generator}.
struct EvalRecord {
  std::string dataset, instruction, output, generator;
};
// A JSON array of such records; "dataset" and "generator" may be absent. Instructions must be unique (the official
// code merges model outputs and references on "instruction"). DataError naming the file and the row otherwise.
std::vector<EvalRecord> read_eval_set(const std::string& path);
// The model outputs file in alpaca_eval's format (json.dump(indent=2), non-ASCII kept).
std::string model_outputs_json(const std::vector<EvalRecord>& records);

struct Annotated {
  std::vector<AnnotationRecord> records;  // in reference order
  int64_t n_judged = 0;       // pairs sent to the judge
  int64_t n_identical = 0;    // identical outputs: draws without a judge call
  int64_t n_unparseable = 0;  // judge replies ranking_parser could not read (preference null)
};
// The annotator over pairs (reference[i] = output_1, outputs[i] = output_2): identical outputs are draws, the rest
// go to `ask` in one call (system, user per pair, in order; it returns one reply each) with the config's
// temperature and max_tokens, and each reply is parsed and un-switched. `generator_2` names the model.
using AskJudge = std::function<std::vector<std::string>(const std::vector<PairRequest>& requests)>;
Annotated annotate(const AnnotatorConfig& config, const std::vector<EvalRecord>& reference,
                   const std::vector<EvalRecord>& outputs, const AskJudge& ask);

}  // namespace mmr::alpaca_eval
