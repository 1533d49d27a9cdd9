// The two faces of `runner report`: one page rendered as self-contained HTML and as Markdown. Both show the same
// facts, warnings, tables and trial list; HTML carries the plots inline, Markdown links the SVG files.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "app/report_model.h"

namespace mmr {

struct Link {
  std::string text, href;  // href empty: plain text
};
using Cell = std::vector<Link>;  // shown one after another, separated by line breaks

// A plain table (the trials and their files).
struct Grid {
  std::vector<std::string> header;
  std::vector<std::vector<Cell>> rows;
};

struct RenderedPlot {
  const ReportPlot* plot = nullptr;
  std::string svg;    // gnuplot's SVG document; empty when it could not be drawn
  std::string error;  // why not
};

struct ReportPage {
  std::string title;
  std::vector<std::pair<std::string, std::string>> facts;  // ("source", "experiments/x.yaml"), ...
  std::vector<std::string> warnings;
  std::vector<ReportTable> tables;
  std::vector<RenderedPlot> plots;
  std::string curves_note;  // which metrics with steps have no curve drawn, and why (empty: none)
  Grid trials;
};

std::string render_html(const ReportPage& page);
std::string render_markdown(const ReportPage& page);

}  // namespace mmr
