// HTML and Markdown for `runner report`. See report_render.h.
#include "app/report_render.h"

#include <fmt/format.h>

#include <cctype>
#include <sstream>
#include <string_view>

#include "app/gnuplot.h"

namespace mmr {
namespace {

// Inline, so the file shows the same anywhere (no stylesheet to fetch). Wide tables scroll on their own; a trial
// label in a header wraps between its key=value pairs, and inside a pair (after = and _, before .) only when it
// is wider than the cell may be, so a dozen long labels ("method=sft evaluated=${models.aligned}") stay legible.
constexpr const char* kCss = R"css(
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #1d1d1f; background: #ffffff; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.warnings { background: #fff4d6; border: 1px solid #e0b040; padding: 0.5em 1em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #c8c8c8; padding: 0.25em 0.6em; vertical-align: top; }
thead th { background: #f0f0f4; } tbody th { background: #fafafa; text-align: left; font-weight: 500; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.stage { text-align: center; }
th.key { position: sticky; left: 0; z-index: 1; box-shadow: inset -1px 0 #c8c8c8; }  /* row names stay in view */
th .label { min-width: 4.5em; max-width: 11em; overflow-wrap: break-word; font-size: 0.95em; }
th .label span { display: inline-block; max-width: 100%; }
ul.same { columns: 22em; column-gap: 2em; margin: 0.4em 0; padding-left: 1.2em; font-size: 0.9em; }
ul.same li { break-inside: avoid; } ul.same code { font-size: 0.95em; }
figure.plot { margin: 1em 0; } figure.plot svg { width: 100%; max-width: 900px; height: auto; }
.note { color: #555; font-size: 0.9em; } .warn { color: #8a4b00; }
)css";

std::string html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string md(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|' || c == '\\' || c == '*' || c == '`') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

// Percent-encodes what may not stand in a relative URL as it is (':' too: "a:b/c" would read as a scheme).
std::string url(const std::string& path) {
  constexpr std::string_view kFile = "file://";
  if (path.compare(0, kFile.size(), kFile) == 0) return std::string(kFile) + url(path.substr(kFile.size()));
  std::string out;
  for (unsigned char c : path) {
    if (std::isalnum(c) || std::string_view("-_.~/").find(static_cast<char>(c)) != std::string_view::npos)
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string stage_of(const std::string& metric) { return metric.substr(0, metric.find('/')); }
std::string name_of(const std::string& metric) {
  const size_t slash = metric.find('/');
  return slash == std::string::npos ? metric : metric.substr(slash + 1);
}

// Consecutive columns of one stage: (stage, how many).
std::vector<std::pair<std::string, size_t>> stage_groups(const std::vector<std::string>& metrics) {
  std::vector<std::pair<std::string, size_t>> groups;
  for (const auto& m : metrics) {
    if (groups.empty() || groups.back().first != stage_of(m)) groups.emplace_back(stage_of(m), 0);
    ++groups.back().second;
  }
  return groups;
}

// HTML of a label part with places to break it where it has to be: after '=' and '_', before a '.' that is not a
// decimal point.
std::string breakable(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '.' && i > 0 && !std::isdigit(static_cast<unsigned char>(text[i - 1]))) out += "<wbr>";
    out += html(std::string(1, text[i]));
    if (text[i] == '=' || text[i] == '_') out += "<wbr>";
  }
  return out;
}

// A header cell's text: a trial label as its key=value pairs, each kept whole where the cell is wide enough.
std::string header_html(const std::string& text, bool trial_label) {
  if (!trial_label) return html(text);
  const std::vector<LabelKey> pairs = parse_label(text);
  if (pairs.empty()) return "<div class=\"label\">" + breakable(text) + "</div>";
  std::string out = "<div class=\"label\">";
  for (size_t i = 0; i < pairs.size(); ++i)
    out += (i ? " " : "") + ("<span>" + breakable(pairs[i].key + "=" + pairs[i].value) + "</span>");
  return out + "</div>";
}

// "560", and where not every trial recorded the metric, how many did: "(in 10 of 12 trials)".
std::string same_count_text(const SameValue& v, int trial_count) {
  return v.trials < trial_count ? fmt::format("(in {} of {} trials)", v.trials, trial_count) : "";
}

std::string value_td(const Stats& s) {
  const std::string title = s.n > 1 ? fmt::format(" title=\"n={}, min {:.6g}, max {:.6g}\"", s.n, s.min, s.max) : "";
  return fmt::format("<td class=\"num\"{}>{}</td>", title, html(format_stats(s)));
}

// Rows are the table's rows; the metric columns sit under one header cell per stage.
void html_by_row(std::ostream& o, const ReportTable& t) {
  o << "<thead><tr><th class=\"key\" rowspan=\"2\">" << html(t.row_header) << "</th>";
  for (const auto& [stage, n] : stage_groups(t.columns))
    o << "<th class=\"stage\" colspan=\"" << n << "\">" << html(stage) << "</th>";
  o << "</tr>\n<tr>";
  for (const auto& m : t.columns) o << "<th>" << html(name_of(m)) << "</th>";
  o << "</tr></thead>\n<tbody>\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o << "<tr><th class=\"key\">" << header_html(t.rows[r], t.trial_rows) << "</th>";
    for (const Stats& s : t.cells[r]) o << value_td(s);
    o << "</tr>\n";
  }
  o << "</tbody>";
}

// One row per metric (its stage in a cell spanning the stage's rows), one column per table row.
void html_by_metric(std::ostream& o, const ReportTable& t) {
  o << "<thead><tr><th>stage</th><th class=\"key\">metric</th>";
  for (const auto& r : t.rows) o << "<th>" << header_html(r, t.trial_rows) << "</th>";
  o << "</tr></thead>\n<tbody>\n";
  size_t c = 0;
  for (const auto& [stage, n] : stage_groups(t.columns))
    for (size_t i = 0; i < n; ++i, ++c) {
      o << "<tr>";
      if (i == 0) o << "<th rowspan=\"" << n << "\">" << html(stage) << "</th>";
      o << "<th class=\"key\">" << html(name_of(t.columns[c])) << "</th>";
      for (size_t r = 0; r < t.rows.size(); ++r) o << value_td(t.cells[r][c]);
      o << "</tr>\n";
    }
  o << "</tbody>";
}

void html_notes(std::ostream& o, const std::vector<std::string>& notes) {
  for (const auto& n : notes) o << "<p class=\"note\">" << html(n) << "</p>\n";
}

void html_same(std::ostream& o, const ReportTable& t) {
  if (t.same.empty()) return;
  o << "<h4>Same in every trial</h4>\n<p class=\"note\">metrics with one value in every trial that recorded them"
    << "</p>\n<ul class=\"same\">\n";
  for (const SameValue& v : t.same) {
    const std::string count = same_count_text(v, t.trial_count);
    o << "<li><code>" << html(v.metric) << "</code>: " << html(fmt::format("{:.6g}", v.value))
      << (count.empty() ? "" : " <span class=\"note\">" + html(count) + "</span>") << "</li>\n";
  }
  o << "</ul>\n";
}

void html_table(std::ostream& o, const ReportTable& t) {
  o << "<h3>" << html(t.title) << "</h3>\n";
  if (t.columns.empty() || t.rows.empty()) {
    o << "<p class=\"note\">" << (t.same.empty() ? "no values to show" : "no metric differs between the trials")
      << "</p>\n";
    html_notes(o, t.notes);
    return html_same(o, t);
  }
  o << "<div class=\"scroll\"><table class=\"metrics\">\n";
  t.transposed ? html_by_metric(o, t) : html_by_row(o, t);
  o << "\n</table></div>\n";
  html_notes(o, t.notes);
  html_same(o, t);
}

std::string html_cell(const Cell& cell) {
  std::string out;
  for (size_t i = 0; i < cell.size(); ++i) {
    out += i ? "<br>" : "";
    out += cell[i].href.empty() ? html(cell[i].text)
                                : fmt::format("<a href=\"{}\">{}</a>", html(url(cell[i].href)), html(cell[i].text));
  }
  return out;
}

void html_grid(std::ostream& o, const Grid& g) {
  o << "<div class=\"scroll\"><table class=\"trials\">\n<thead><tr>";
  for (const auto& h : g.header) o << "<th>" << html(h) << "</th>";
  o << "</tr></thead>\n<tbody>\n";
  for (const auto& row : g.rows) {
    o << "<tr>";
    for (const Cell& c : row) o << "<td>" << html_cell(c) << "</td>";
    o << "</tr>\n";
  }
  o << "</tbody>\n</table></div>\n";
}

void html_plots(std::ostream& o, const ReportPage& page, bool curves) {
  for (size_t i = 0; i < page.plots.size(); ++i) {
    const RenderedPlot& p = page.plots[i];
    if (p.plot->training_curve != curves) continue;
    o << "<figure class=\"plot\" id=\"" << html(safe_name(p.plot->file)) << "\"><figcaption><strong>"
      << html(p.plot->title) << "</strong></figcaption>\n";
    if (p.svg.empty()) o << "<p class=\"warn\">not drawn: " << html(p.error) << "</p>\n";
    else o << inline_svg(p.svg, fmt::format("p{}_", i)) << "\n";
    html_notes(o, p.plot->notes);
    o << "</figure>\n";
  }
}

bool has_plots(const ReportPage& page, bool curves) {
  for (const auto& p : page.plots)
    if (p.plot->training_curve == curves) return true;
  return false;
}

void html_head(std::ostream& o, const ReportPage& page) {
  o << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" << html(page.title)
    << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n<h1>" << html(page.title) << "</h1>\n<dl class=\"facts\">\n";
  for (const auto& [k, v] : page.facts) o << "<dt>" << html(k) << "</dt><dd>" << html(v) << "</dd>\n";
  o << "</dl>\n";
  if (page.warnings.empty()) return;
  o << "<div class=\"warnings\"><h2>Warnings</h2><ul>\n";
  for (const auto& w : page.warnings) o << "<li>" << html(w) << "</li>\n";
  o << "</ul></div>\n";
}

// ---- Markdown ----

void md_row(std::ostream& o, const std::vector<std::string>& cells) {
  o << "|";
  for (const auto& c : cells) o << " " << c << " |";
  o << "\n";
}

// `numbers`: every column but the first holds numbers, aligned right.
void md_grid(std::ostream& o, const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
             bool numbers = true) {
  md_row(o, header);
  o << "|";
  for (size_t i = 0; i < header.size(); ++i) o << (i && numbers ? " ---: |" : " --- |");
  o << "\n";
  for (const auto& r : rows) md_row(o, r);
  o << "\n";
}

// Columns `first`..`last` of a table by row (Markdown has no grouped headers: long tables split by stage).
void md_by_row(std::ostream& o, const ReportTable& t, size_t first, size_t last) {
  std::vector<std::string> header = {md(t.row_header)};
  for (size_t c = first; c < last; ++c) header.push_back(md(t.columns[c]));
  std::vector<std::vector<std::string>> rows;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    rows.push_back({md(t.rows[r])});
    for (size_t c = first; c < last; ++c) rows.back().push_back(md(format_stats(t.cells[r][c])));
  }
  md_grid(o, header, rows);
}

void md_by_metric(std::ostream& o, const ReportTable& t) {
  std::vector<std::string> header = {"metric"};
  for (const auto& r : t.rows) header.push_back(md(r));
  std::vector<std::vector<std::string>> rows;
  for (size_t c = 0; c < t.columns.size(); ++c) {
    rows.push_back({md(t.columns[c])});
    for (size_t r = 0; r < t.rows.size(); ++r) rows.back().push_back(md(format_stats(t.cells[r][c])));
  }
  md_grid(o, header, rows);
}

void md_same(std::ostream& o, const ReportTable& t) {
  if (t.same.empty()) return;
  o << "**Same in every trial** (metrics with one value in every trial that recorded them):\n\n";
  for (const SameValue& v : t.same) {
    const std::string count = same_count_text(v, t.trial_count);
    o << "- " << md(v.metric) << ": " << fmt::format("{:.6g}", v.value) << (count.empty() ? "" : " " + md(count))
      << "\n";
  }
  o << "\n";
}

void md_table(std::ostream& o, const ReportTable& t) {
  o << "### " << md(t.title) << "\n\n";
  if (t.columns.empty() || t.rows.empty())
    o << (t.same.empty() ? "(no values to show)" : "(no metric differs between the trials)") << "\n\n";
  else if (t.transposed) md_by_metric(o, t);
  else if (t.columns.size() <= 8) md_by_row(o, t, 0, t.columns.size());
  else {
    size_t first = 0;
    for (const auto& [stage, n] : stage_groups(t.columns)) {
      o << "Stage `" << stage << "`:\n\n";
      md_by_row(o, t, first, first + n);
      first += n;
    }
  }
  for (const auto& n : t.notes) o << "_" << md(n) << "_\n\n";
  md_same(o, t);
}

std::string md_cell(const Cell& cell) {
  std::string out;
  for (size_t i = 0; i < cell.size(); ++i) {
    out += i ? "<br>" : "";
    out += cell[i].href.empty() ? md(cell[i].text) : fmt::format("[{}](<{}>)", md(cell[i].text), url(cell[i].href));
  }
  return out;
}

void md_plots(std::ostream& o, const ReportPage& page, bool curves) {
  for (const RenderedPlot& p : page.plots) {
    if (p.plot->training_curve != curves) continue;
    o << "### " << md(p.plot->title) << "\n\n";
    if (p.svg.empty()) o << "**not drawn:** " << md(p.error) << "\n\n";
    else o << "![" << md(p.plot->title) << "](" << url(p.plot->file) << ")\n\n";
    for (const auto& n : p.plot->notes) o << "_" << md(n) << "_\n\n";
  }
}

}  // namespace

std::string render_html(const ReportPage& page) {
  std::ostringstream o;
  html_head(o, page);
  o << "<h2>Tables</h2>\n";
  for (const ReportTable& t : page.tables) html_table(o, t);
  if (has_plots(page, false)) o << "<h2>Plots</h2>\n";
  html_plots(o, page, false);
  if (has_plots(page, true) || !page.curves_note.empty()) o << "<h2>Training curves</h2>\n";
  html_plots(o, page, true);
  if (!page.curves_note.empty()) o << "<p class=\"note\">" << html(page.curves_note) << "</p>\n";
  o << "<h2>Trials, logs and artifacts</h2>\n";
  html_grid(o, page.trials);
  o << "</body>\n</html>\n";
  return o.str();
}

std::string render_markdown(const ReportPage& page) {
  std::ostringstream o;
  o << "# " << md(page.title) << "\n\n";
  for (const auto& [k, v] : page.facts) o << "- **" << md(k) << "**: " << md(v) << "\n";
  o << "\n";
  if (!page.warnings.empty()) o << "## Warnings\n\n";
  for (const auto& w : page.warnings) o << "- " << md(w) << "\n";
  o << (page.warnings.empty() ? "" : "\n") << "## Tables\n\n";
  for (const ReportTable& t : page.tables) md_table(o, t);
  if (has_plots(page, false)) o << "## Plots\n\n";
  md_plots(o, page, false);
  if (has_plots(page, true) || !page.curves_note.empty()) o << "## Training curves\n\n";
  md_plots(o, page, true);
  if (!page.curves_note.empty()) o << "_" << md(page.curves_note) << "_\n\n";
  o << "## Trials, logs and artifacts\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const auto& row : page.trials.rows) {
    rows.emplace_back();
    for (const Cell& c : row) rows.back().push_back(md_cell(c));
  }
  std::vector<std::string> header;
  for (const auto& h : page.trials.header) header.push_back(md(h));
  md_grid(o, header, rows, /*numbers=*/false);
  return o.str();
}

}  // namespace mmr
