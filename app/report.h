// `runner report EXP [--out DIR]`: one experiment's results as a self-contained report.html (inline CSS, plots
// inline as SVG, nothing fetched from anywhere) and a report.md with the same tables whose plots are the SVG files
// written beside it. Contents: the experiment and its trial counts by status, a table of the final metrics that
// differ between trials (mean ± spread over seeds) with a list of those that have one value in every trial, the
// tables and plots its `report:` section declares (report_model.h), the training curves of loss-like and
// reward/accuracy metrics (or those `report: curves:` lists), and each trial's log and artifacts, linked relative
// to the report's folder. Plot files of an earlier report in the same folder that this one does not draw are
// removed.
#pragma once

#include <filesystem>
#include <string>

namespace mmr {

struct ReportOptions {
  std::filesystem::path results;  // the results database
  std::string experiment;         // a name in the store, or an experiment file whose name: is used
  std::filesystem::path out;      // empty: results/<experiment>/report/ beside the database
};

// Writes the report (every file atomically) and returns its folder. Bad input (no such database or experiment)
// is a ConfigError; a plot gnuplot cannot draw is a warning in the report.
std::filesystem::path write_report(const ReportOptions& options);

}  // namespace mmr
