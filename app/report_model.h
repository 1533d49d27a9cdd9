// What `runner report` shows, before it is drawn: tables of mean ± spread over seeds, plots as lists of
// points, and the warnings about an experiment's `report:` section (unknown keys and metrics are warnings in the
// report, never a failed report).
//
//   report:
//     tables:
//       - {title: "Table 4", rows: method, columns: [pope/mean/f1, text/overall], where: {data.noise: 0.0}}
//     plots:
//       - {title: "DPO data scaling", x: data.fraction, y: text/overall, where: {data.noise: 0.0}}
//
// `rows`, `x` and the keys of `where` are keys of the trial labels (data.fraction, seed, ...); `columns` and `y`
// are metrics as `stage/name`. A where value may be a list (any of them). Without a `report:` section the report
// has one table of every final metric by trial and the training curves.
#pragma once

#include <string>
#include <vector>

#include "app/experiment_data.h"

namespace mmr {

struct ReportTable {
  std::string title;
  std::string row_header;                 // "trial", or the `rows` key
  std::vector<std::string> rows;          // row labels
  std::vector<std::string> columns;       // metrics, "stage/name", grouped by stage
  std::vector<std::vector<Stats>> cells;  // [row][column]; n == 0: no value
  bool transposed = false;                // drawn with metrics as rows: there are more metrics than rows
  std::vector<std::string> notes;         // shown under the table
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
  std::vector<ReportPlot> plots;   // the declared plots, then one training curve per metric with steps
  std::vector<std::string> warnings;
};

ReportModel build_report_model(const ExperimentData& data);

// "1.5" or "1.5 ± 0.707" (sample standard deviation) or "–" for no value.
std::string format_stats(const Stats& s);

// The string a file name or an element id can carry: letters, digits, '-', '_', '.'; anything else becomes '_'.
std::string safe_name(const std::string& text);

}  // namespace mmr
