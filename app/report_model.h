// What `runner report` shows, before it is drawn: tables of mean ± spread over seeds, plots as lists of
// points, and the warnings about an experiment's `report:` section (unknown keys and metrics are warnings in the
// report, never a failed report).
//
//   report:
//     tables:
//       - {title: "Table 4", rows: method, columns: [pope/mean/f1, text/overall], where: {noise: 0.0}}
//     plots:
//       - {title: "DPO data scaling", x: data.fraction, y: text/overall, where: {data.noise: 0.0}}
//     curves: [train/train/loss, train/train/lr]     # optional: which training curves to draw ("all": every one)
//
// `rows`, `x` and the keys of `where` name a value of each trial: a key of its label (data.fraction, seed, ...),
// else a path of its resolved configuration (trials.config): a key of `defaults:` that the trial does not vary
// (`fraction` stays 1.0 and is not in the label, yet `where: {fraction: 1.0}` keeps the trial), a dotted path into
// a map value (`evaluated.plugin`), or a stage's option as `<stage>.<option>`. Numbers compare as numbers (0.5,
// 0.50 and 5e-1 are one value); a where value may be a list (any of them). `columns` and `y` are metrics as
// `stage/name`: a row that lacks one shows "—", and one that no trial recorded is one warning.
//
// Without a `report:` section the report has one table of the final metrics that differ between trials (the
// metrics with one value in every trial are listed beside it, "Same in every trial") and the training curves.
// Training curves by default: the metrics with steps whose name (after the stage) contains loss, accuracy,
// reward, margin or logps (case-insensitive); the others (lr, epoch, grad_norm, tokens_per_s, ...) are named in a
// note. `curves:` lists the metrics to draw instead, `curves: all` draws every one, `curves: []` none.
#pragma once

#include <string>
#include <vector>

#include "app/experiment_data.h"

namespace mmr {

// A metric with one value in every trial that recorded it (the default table lists it apart).
struct SameValue {
  std::string metric;
  double value = 0;
  int trials = 0;  // how many trials recorded it
};

struct ReportTable {
  std::string title;
  std::string row_header;                 // "trial", or the `rows` key
  std::vector<std::string> rows;          // row labels
  std::vector<std::string> columns;       // metrics, "stage/name", grouped by stage
  std::vector<std::vector<Stats>> cells;  // [row][column]; n == 0: no value
  bool transposed = false;                // drawn with metrics as rows: there are more metrics than rows
  bool trial_rows = false;                // the row labels are trial labels ("method=sft noise=0.5")
  std::vector<std::string> notes;         // shown under the table
  std::vector<SameValue> same;            // the metrics left out of `columns` for having one value everywhere
  int trial_count = 0;                    // trials of the experiment (what `same` is "in every trial" of)
};

struct PlotPoint {
  double x = 0, y = 0, err = 0;  // err: the standard deviation over seeds (0 for one seed)
};
struct PlotSeries {
  std::string title;
  std::vector<PlotPoint> points;  // by x
};
struct ReportPlot {
  std::string title, file;  // file: the SVG's name beside report.md
  std::string xlabel, ylabel;
  std::vector<std::string> categories;  // x tick labels when x is not numeric (then x is the index)
  std::vector<PlotSeries> series;
  bool error_bars = false;
  bool training_curve = false;  // one line per trial over steps (else a plot the experiment declared)
  std::vector<std::string> notes;
};

struct ReportModel {
  std::vector<ReportTable> tables;
  std::vector<ReportPlot> plots;   // the declared plots, then one training curve per selected metric with steps
  std::vector<std::string> curves_left_out;  // metrics with steps whose curve is not drawn (see `curves:` above)
  std::string curves_note;                   // says which and why, under the training curves
  std::vector<std::string> warnings;
};

// Whether a metric's curve is drawn by default: its name (after "stage/") has loss, accuracy, reward, margin or
// logps in it, whatever the case.
bool default_curve(const std::string& metric);

ReportModel build_report_model(const ExperimentData& data);

// "1.5" or "1.5 ± 0.707" (sample standard deviation) or "—" for no value.
std::string format_stats(const Stats& s);

// The string a file name or an element id can carry: letters, digits, '-', '_', '.'; anything else becomes '_'.
std::string safe_name(const std::string& text);

}  // namespace mmr
