// `runner report` end to end: a real run with the test plugins (a counter stage with a per-step loss, a line
// counting benchmark), then the report, opened in headless Chromium: the screenshot's plot regions must be drawn
// (non-background pixels of several colours) and the tables of the rendered page must hold the numbers the store
// recorded. Also: the Markdown twin, the metrics with one value in every trial listed apart from the table,
// warnings for a report: section naming unknown keys and metrics (one per missing metric), keys of `where:`,
// `rows:` and `x:` that only the trials' configuration has, which training curves are drawn, --out, and exit
// status 2 for bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include <fmt/format.h>

#include "core/lib/util/atomic_file.h"
#include "runner_fixture.h"

namespace fs = std::filesystem;
using namespace mmr;
using mmr::test::ProcessResult;
using mmr::test::find_program;

namespace {

constexpr const char* kSpec = R"(name: rep
grid:
  train.start: [1.0, 2.0]
seeds: [1, 2]
stages:
  - {name: train, algorithm: counter, steps: 6, decay: 0.5, start: 1.0}
  - {name: eval, benchmark: line_bench, file: "${artifact:train/curve}"}
report:
  tables:
    - {title: "By start", rows: train.start, columns: [train/final_loss, eval/lines, nope/metric]}
    - {title: "Broken", rows: method}
  plots:
    - {title: "Final loss by start", x: train.start, y: train/final_loss}
    - {title: "Broken plot", x: train.start, y: nope/metric, colour: red}
)";

// ---- the rendered page's tables, spans expanded ----

struct HtmlCell {
  std::string text;
  bool header = false;
};
using HtmlRows = std::vector<std::vector<HtmlCell>>;
struct HtmlTable {
  HtmlRows head, body;
};

std::string text_of(const std::string& html) {
  std::string t = std::regex_replace(html, std::regex("<[^>]*>"), "");
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&amp;", "&"}})
    for (size_t p = t.find(from); p != std::string::npos; p = t.find(from, p + to.size())) t.replace(p, from.size(), to);
  const size_t a = t.find_first_not_of(" \n\t"), b = t.find_last_not_of(" \n\t");
  return a == std::string::npos ? "" : t.substr(a, b - a + 1);
}

int span(const std::string& attrs, const char* name) {
  std::smatch m;
  return std::regex_search(attrs, m, std::regex(std::string(name) + "=\"(\\d+)\"")) ? std::stoi(m[1]) : 1;
}

// The rows of a <thead> or <tbody>, each cell repeated over the columns and rows it spans.
HtmlRows expand(const std::string& section) {
  static const std::regex tr("<tr[^>]*>([\\s\\S]*?)</tr>"), cell("<(th|td)([^>]*)>([\\s\\S]*?)</\\1>");
  HtmlRows grid;
  std::map<std::pair<size_t, size_t>, HtmlCell> carried;  // (row, column) -> a cell spanning down into it
  for (std::sregex_iterator r(section.begin(), section.end(), tr), end; r != end; ++r) {
    std::vector<HtmlCell> row;
    const std::string inner = (*r)[1];
    auto fill = [&] {
      while (carried.count({grid.size(), row.size()})) row.push_back(carried[{grid.size(), row.size()}]);
    };
    for (std::sregex_iterator c(inner.begin(), inner.end(), cell); c != end; ++c) {
      fill();
      const HtmlCell hc{text_of((*c)[3]), (*c)[1] == "th"};
      for (int k = 0; k < span((*c)[2], "colspan"); ++k) {
        for (int d = 1; d < span((*c)[2], "rowspan"); ++d) carried[{grid.size() + d, row.size()}] = hc;
        row.push_back(hc);
      }
    }
    fill();
    grid.push_back(row);
  }
  return grid;
}

std::string between(const std::string& s, const std::string& open, const std::string& close) {
  const size_t a = s.find(open);
  if (a == std::string::npos) return "";
  const size_t b = s.find(close, a);
  return s.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

int count_of(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// The items of the page's "Same in every trial" list, as text ("eval/lines: 6").
std::vector<std::string> same_list(const std::string& html) {
  static const std::regex li("<li>([\\s\\S]*?)</li>");
  const std::string list = between(html, "<ul class=\"same\">", "</ul>");
  std::vector<std::string> out;
  for (std::sregex_iterator i(list.begin(), list.end(), li), end; i != end; ++i) out.push_back(text_of((*i)[1]));
  return out;
}

std::vector<HtmlTable> metric_tables(const std::string& dom) {
  std::vector<HtmlTable> out;
  for (size_t p = dom.find("<table class=\"metrics\""); p != std::string::npos;
       p = dom.find("<table class=\"metrics\"", p + 1)) {
    const std::string table = dom.substr(p, dom.find("</table>", p) - p);
    out.push_back({expand(between(table, "<thead", "</thead>")), expand(between(table, "<tbody", "</tbody>"))});
  }
  return out;
}

// "a/b" from the distinct texts stacked in a header column, or the header cells leading a body row.
std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i)
    if (i == 0 || parts[i] != parts[i - 1]) out += (out.empty() ? "" : "/") + parts[i];
  return out;
}
std::string column_key(const HtmlTable& t, size_t j) {
  std::vector<std::string> parts;
  for (const auto& row : t.head)
    if (j < row.size()) parts.push_back(row[j].text);
  return joined(parts);
}
std::string row_key(const std::vector<HtmlCell>& row) {
  std::vector<std::string> parts;
  for (size_t k = 0; k < row.size() && row[k].header; ++k) parts.push_back(row[k].text);
  return joined(parts);
}

// The value cell at (a, b) in either orientation (rows a and column b, or the transpose); nullopt when none.
std::optional<std::string> lookup(const std::vector<HtmlTable>& tables, const std::string& a, const std::string& b) {
  for (const HtmlTable& t : tables)
    for (const auto& row : t.body)
      for (size_t j = 0; j < row.size(); ++j) {
        if (row[j].header) continue;
        const std::string r = row_key(row), c = column_key(t, j);
        if ((r == a && c == b) || (r == b && c == a)) return row[j].text;
      }
  return std::nullopt;
}

// ---- headless Chromium ----

// The plots are gnuplot's: where it is not installed (a GPU machine without tools/setup.sh), the report says so in
// a warning and these tests, which check the plots, are skipped with the reason.
#define SKIP_WITHOUT_GNUPLOT() \
  if (find_program("gnuplot").empty()) GTEST_SKIP() << "gnuplot is not installed (tools/setup.sh installs it)"

// After the page is laid out, the plots' boxes (page coordinates) and the page height go into attributes of
// <body>, which --dump-dom shows; they change no layout, so the screenshot of the same file matches them.
constexpr const char* kProbe = R"(<script>
document.body.setAttribute('data-boxes', [...document.querySelectorAll('figure.plot svg')].map(e => {
  const r = e.getBoundingClientRect();
  return [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(',');
}).join(';'));
document.body.setAttribute('data-height', String(document.documentElement.scrollHeight));
</script>
</body>)";

struct Box {
  int x, y, w, h;
};

std::vector<Box> boxes_in(const std::string& dom) {
  std::smatch m;
  std::vector<Box> out;
  if (!std::regex_search(dom, m, std::regex("data-boxes=\"([^\"]*)\""))) return out;
  std::stringstream ss(m[1].str());
  for (std::string b; std::getline(ss, b, ';');) {
    Box box{};
    if (std::sscanf(b.c_str(), "%d,%d,%d,%d", &box.x, &box.y, &box.w, &box.h) == 4) out.push_back(box);
  }
  return out;
}

int page_height(const std::string& dom) {
  std::smatch m;
  return std::regex_search(dom, m, std::regex("data-height=\"(\\d+)\"")) ? std::stoi(m[1]) : 0;
}

struct Pixels {
  int non_background = 0;  // not the page's white
  int chromatic = 0;       // of a colour (not grey): a drawn line, not just axes and text
  std::set<int> colours;   // distinct colours among the non-background pixels
};

Pixels pixels_in(const unsigned char* rgb, int width, int height, const Box& b) {
  Pixels p;
  for (int y = std::max(0, b.y); y < std::min(height, b.y + b.h); ++y)
    for (int x = std::max(0, b.x); x < std::min(width, b.x + b.w); ++x) {
      const unsigned char* px = rgb + 3 * (static_cast<size_t>(y) * width + x);
      if (px[0] > 245 && px[1] > 245 && px[2] > 245) continue;
      ++p.non_background;
      p.chromatic += std::max({px[0], px[1], px[2]}) - std::min({px[0], px[1], px[2]}) > 40;
      p.colours.insert((px[0] >> 3) << 10 | (px[1] >> 3) << 5 | (px[2] >> 3));
    }
  return p;
}

class Report : public mmr::test::RunnerTest {
 protected:
  ProcessResult chromium(const std::string& program, std::vector<std::string> rest) const {
    std::vector<std::string> a = {program, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                  "--force-device-scale-factor=1", "--user-data-dir=" + (dir_ / "chrome").string()};
    a.insert(a.end(), rest.begin(), rest.end());
    return mmr::test::run(a);
  }
  // cell (the label without its seed) -> metric -> the final values of its trials, from the store.
  std::map<std::string, std::map<std::string, std::vector<double>>> recorded() const {
    std::map<std::string, std::map<std::string, std::vector<double>>> out;
    const QueryResult r = query(
        "SELECT replace(t.label, ' seed=' || t.seed, ''), f.stage || '/' || f.name, f.value FROM final_metrics f "
        "JOIN trials t ON t.id = f.trial_id WHERE f.step IS NULL");
    for (const auto& row : r.rows) out[row[0].text][row[1].text].push_back(std::strtod(row[2].text.c_str(), nullptr));
    return out;
  }
  fs::path report_folder() const { return dir_ / "results" / "rep" / "report"; }
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / v.size();
}

}  // namespace

TEST_F(Report, WritesHtmlAndMarkdownWithTablesPlotsWarningsAndLinks) {
  SKIP_WITHOUT_GNUPLOT();
  ASSERT_EQ(runner({write("rep.yaml", kSpec)}).status, 0);
  const ProcessResult r = runner({"report", "rep"});
  ASSERT_EQ(r.status, 0) << r.err;
  const fs::path folder = report_folder();
  EXPECT_NE(r.out.find((folder / "report.html").string()), std::string::npos) << r.out;
  for (const char* f : {"report.html", "report.md", "plot-1.svg", "curve-train_loss.svg"})
    EXPECT_TRUE(fs::exists(folder / f)) << f;
  const std::string html = read_file(folder / "report.html"), md = read_file(folder / "report.md");
  // Self-contained: nothing is fetched from elsewhere (the SVG namespaces are names, not fetches).
  EXPECT_FALSE(std::regex_search(html, std::regex("(src|href)\\s*=\\s*[\"']?(https?:|//)|url\\((https?:|//)|@import")));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<?xml"), std::string::npos);  // the SVGs are inline elements
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("4: 4 finished"), std::string::npos);
  // The report: section's mistakes are warnings, in both files.
  const std::string html_text = text_of(html);
  for (const std::string* doc : {&html_text, &md}) {
    // nope/metric, named by a table and a plot, is one warning naming both.
    EXPECT_EQ(count_of(*doc, "metric 'nope/metric' was not recorded"), 1) << *doc;
    EXPECT_NE(doc->find("(report.tables[0], report.plots[1] name it"), std::string::npos);
    EXPECT_NE(doc->find("rows: 'method' is not a key of the trial labels or their configuration"), std::string::npos);
    EXPECT_NE(doc->find("unknown field 'colour' ignored"), std::string::npos);
  }
  EXPECT_NE(md.find("| 6 ± 0 | — |"), std::string::npos) << md;  // By start: eval/lines, then nope/metric as "—"
  EXPECT_NE(md.find("](plot-1.svg)"), std::string::npos);
  EXPECT_NE(md.find("](curve-train_loss.svg)"), std::string::npos);
  EXPECT_EQ(md.find("more metric(s) with steps not drawn"), std::string::npos);  // loss is drawn by default

  // The default table holds the metrics that differ (final_loss by start, seed by seed); eval's line and word
  // counts of the same curve file are one value in every trial and listed apart, as metric: value.
  const std::string table = between(md, "### Final metrics by trial", "**Same in every trial**");
  EXPECT_NE(table.find("| train.start=1.0 |"), std::string::npos) << md;  // a row per cell: 2 metrics, 2 cells
  EXPECT_NE(table.find("train/final_loss"), std::string::npos) << table;
  EXPECT_NE(table.find("train/seed"), std::string::npos) << table;
  EXPECT_EQ(table.find("eval/"), std::string::npos) << table;
  EXPECT_NE(table.find("2 metric(s) with one value in every trial are listed under"), std::string::npos) << table;
  EXPECT_NE(md.find("**Same in every trial** (metrics with one value in every trial that recorded them):\n\n"
                    "- eval/lines: 6\n- eval/words: 12\n\n"), std::string::npos) << md;
  EXPECT_EQ(same_list(html), (std::vector<std::string>{"eval/lines: 6", "eval/words: 12"}));
  // Each trial's log and artifacts, linked relative to the report's folder.
  const std::string trial = fs::path(query("SELECT artifact_dir FROM trials WHERE ordinal = 0").rows.at(0).at(0).text)
                                .filename().string();
  EXPECT_NE(html.find("href=\"../" + trial + "/trial.log\""), std::string::npos);
  EXPECT_NE(html.find("href=\"../" + trial + "/train/curve.txt\""), std::string::npos);
  EXPECT_NE(md.find("](<../" + trial + "/trial.log>)"), std::string::npos);
  EXPECT_TRUE(fs::exists(folder / ".." / trial / "trial.log"));
}

TEST_F(Report, ChromiumShowsDrawnPlotsAndTablesHoldingTheStoresNumbers) {
  SKIP_WITHOUT_GNUPLOT();
  const std::string program = find_program("chromium");
  if (program.empty()) GTEST_SKIP() << "chromium is not installed (tools/setup.sh installs it)";
  ASSERT_EQ(runner({write("rep.yaml", kSpec)}).status, 0);
  ASSERT_EQ(runner({"report", write("again.yaml", kSpec)}).status, 0);  // the file's name: names the experiment
  std::string page = read_file(report_folder() / "report.html");
  page.replace(page.rfind("</body>"), 7, kProbe);
  const fs::path probe = report_folder() / "probe.html";
  write_file_atomic(probe, page);

  const ProcessResult dom = chromium(program, {"--window-size=1200,3000", "--dump-dom", "file://" + probe.string()});
  ASSERT_EQ(dom.status, 0) << dom.err;
  const std::vector<Box> boxes = boxes_in(dom.out);
  ASSERT_EQ(boxes.size(), 2u) << "expected the declared plot and the train/loss curve";

  // (b) the rendered tables hold the store's numbers: mean over seeds, and the spread where there are two.
  const std::vector<HtmlTable> tables = metric_tables(dom.out);
  ASSERT_EQ(tables.size(), 2u);
  const auto values = recorded();
  ASSERT_EQ(values.size(), 2u);
  // A metric with one value in every trial is in the list beside the table, not in it.
  std::map<std::string, std::set<double>> all_values;
  for (const auto& [cell, metrics] : values)
    for (const auto& [metric, v] : metrics) all_values[metric].insert(v.begin(), v.end());
  const std::vector<std::string> same = same_list(dom.out);
  std::set<std::string> constant;
  for (const auto& [metric, v] : all_values)
    if (v.size() == 1) {
      constant.insert(metric);
      EXPECT_NE(std::find(same.begin(), same.end(), fmt::format("{}: {:.6g}", metric, *v.begin())), same.end())
          << metric << " is not listed as the same in every trial";
    }
  EXPECT_EQ(constant, (std::set<std::string>{"eval/lines", "eval/words"}));
  EXPECT_EQ(same.size(), constant.size());
  for (const auto& [cell, metrics] : values)
    for (const auto& [metric, v] : metrics) {
      if (constant.count(metric)) {
        EXPECT_FALSE(lookup(tables, cell, metric)) << metric << " is in the table though it never differs";
        continue;
      }
      const auto shown = lookup(tables, cell, metric);
      ASSERT_TRUE(shown) << cell << " × " << metric << " is not in the page's tables";
      EXPECT_EQ(shown->rfind(fmt::format("{:.6g}", mean(v)), 0), 0u) << *shown << " for " << cell << " " << metric;
      EXPECT_NE(shown->find("±"), std::string::npos) << *shown;  // two seeds each
    }
  EXPECT_EQ(lookup(tables, "1.0", "train/final_loss"), fmt::format("{:.6g} ± 0", mean(values.at("train.start=1.0").at("train/final_loss"))));
  EXPECT_EQ(lookup(tables, "2.0", "eval/lines"), "6 ± 0");
  EXPECT_EQ(lookup(tables, "train.start=1.0", "train/seed"), "1.5 ± 0.707");  // seeds 1 and 2

  // (a) the screenshot decodes and each plot's region is drawn: not blank, several colours, coloured lines.
  const int height = std::max(3000, page_height(dom.out));
  const fs::path png = dir_ / "shot.png";
  const ProcessResult shot = chromium(program, {fmt::format("--window-size=1200,{}", height),
                                                "--screenshot=" + png.string(), "file://" + probe.string()});
  ASSERT_EQ(shot.status, 0) << shot.err;
  int w = 0, h = 0, channels = 0;
  unsigned char* rgb = stbi_load(png.c_str(), &w, &h, &channels, 3);
  ASSERT_NE(rgb, nullptr) << "the screenshot does not decode: " << stbi_failure_reason();
  EXPECT_EQ(w, 1200);
  for (const Box& b : boxes) {
    ASSERT_LE(b.y + b.h, h) << "plot below the screenshot";
    const Pixels p = pixels_in(rgb, w, h, b);
    const double area = static_cast<double>(b.w) * b.h;
    EXPECT_GT(p.non_background, area * 0.01) << "plot at y=" << b.y << " is blank";
    EXPECT_GE(p.colours.size(), 3u) << "plot at y=" << b.y;
    EXPECT_GT(p.chromatic, 50) << "plot at y=" << b.y << " has no coloured line";
  }
  // A control: the page's left margin beside the plots is background only.
  const Pixels margin = pixels_in(rgb, w, h, {0, boxes[0].y, 10, boxes[0].h});
  EXPECT_EQ(margin.non_background, 0);
  stbi_image_free(rgb);
}

TEST_F(Report, OutWritesWhereAskedAndBadInputExitsTwo) {
  SKIP_WITHOUT_GNUPLOT();
  ProcessResult r = runner({"report", "rep"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  { Store create(db_); }  // an empty store
  r = runner({"report", "rep"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("holds no experiment yet"), std::string::npos) << r.err;
  ASSERT_EQ(runner({write("rep.yaml", kSpec)}).status, 0);
  r = runner({"report", "other"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no experiment 'other'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("expected one of: rep"), std::string::npos) << r.err;
  r = runner({"report", (dir_ / "missing.yaml").string()});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("experiment file"), std::string::npos) << r.err;
  r = runner({"report"});
  EXPECT_EQ(r.status, 2);
  fs::remove_all(report_folder());  // the run wrote the report there (its file has a report: section)
  r = runner({"report", "rep", "--out", (dir_ / "elsewhere").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "elsewhere" / "report.html"));
  EXPECT_TRUE(fs::exists(dir_ / "elsewhere" / "plot-1.svg"));
  EXPECT_FALSE(fs::exists(report_folder()));
}

// The main job's shape: trials set only the keys they vary, so a trial at the defaults has no `fraction` or
// `noise` in its label (the first has no label at all). where:, rows: and x: read those from the trial's resolved
// configuration: a defaults key, a dotted path into a map value, a stage's option; numbers compare as numbers.
constexpr const char* kDefaultsSpec = R"(name: rep
defaults: {method: a, fraction: 1.0, noise: 0.0, opt: {size: 2}}
include:
  - {method: b}
  - {method: a, fraction: 0.5}
  - {method: a, noise: 0.5}
stages:
  - {name: train, algorithm: counter, steps: 4, decay: 0.5, start: "${fraction}"}
  - {name: eval, when: {method: b}, benchmark: line_bench, file: "${artifact:train/curve}"}
report:
  tables:
    - {title: "Methods", rows: method, where: {fraction: 1, noise: 0}, columns: [train/final_loss, eval/lines]}
    - {title: "Scaling", rows: fraction, where: {method: a, noise: 0.0}, columns: [train/final_loss]}
    - {title: "By option", rows: train.decay, where: {train.steps: 4, opt.size: [2, 3]}, columns: [train/final_loss]}
    - {title: "Nothing", rows: method, where: {nokey: 1}, columns: [train/final_loss]}
  plots:
    - {title: "Scaling plot", x: fraction, y: train/final_loss, where: {method: a, noise: 0}}
)";

TEST_F(Report, WhereRowsAndXReadKeysTheLabelLacksFromTheTrialsConfiguration) {
  SKIP_WITHOUT_GNUPLOT();
  const ProcessResult run = runner({write("rep.yaml", kDefaultsSpec)});
  ASSERT_EQ(run.status, 0) << run.err;
  ASSERT_EQ(query("SELECT label FROM trials ORDER BY ordinal").rows.at(0).at(0).text, "");  // at the defaults
  ASSERT_EQ(runner({"report", "rep"}).status, 0);
  const std::string md = read_file(report_folder() / "report.md");
  // Methods: the trial at the defaults is method a (from its configuration), the noised one is left out (or row a
  // would pool two trials: "0.125 ± 0"); only method b ran eval, so row a shows "—" and nothing warns about it.
  EXPECT_NE(md.find("### Methods\n\n| method | train/final_loss | eval/lines |\n| --- | ---: | ---: |\n"
                    "| a | 0.125 | — |\n| b | 0.125 | 4 |\n\n"), std::string::npos) << md;
  // Scaling: fraction 1.0 from the configuration, 0.5 from the label; start = fraction, so the losses halve.
  EXPECT_NE(md.find("### Scaling\n\n| fraction | train/final_loss |\n| --- | ---: |\n| 1.0 | 0.125 |\n"
                    "| 0.5 | 0.0625 |\n\n"), std::string::npos) << md;
  // A stage's option and a path into a map value: every trial has them, so one row pools all four.
  EXPECT_NE(md.find("| 0.5 | 0.109375 ± 0.0312 |\n\n_± is the sample standard deviation over the trials of the row "
                    "(n − 1)_\n\n_each row pools trials that differ in method, fraction, noise"), std::string::npos)
      << md;
  EXPECT_NE(md.find("| (defaults) | 0.125 | — | — |"), std::string::npos) << md;  // the default table's row of it
  // A key neither the labels nor the configurations have is still a warning, naming both kinds of key.
  EXPECT_NE(md.find("report.tables[3]: where: 'nokey' is not a key of the trial labels or their configuration "
                    "(expected one of the labels' method, fraction, noise, the configuration's fraction, method, "
                    "noise, opt"), std::string::npos) << md;
  EXPECT_EQ(count_of(md, "where: no trial has"), 0) << md;
  EXPECT_EQ(md.find("eval/lines' was not recorded"), std::string::npos) << md;
  // The plot has both points: x = 1.0 from the configuration, 0.5 from the label.
  EXPECT_EQ(md.find("not drawn"), std::string::npos) << md;
  const std::string svg = read_file(report_folder() / "plot-1.svg");
  EXPECT_NE(svg.find("<path"), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("M[0-9.]+,[0-9.]+ L[0-9.]+,[0-9.]+ +'")))
      << "expected one line of two points";
  EXPECT_EQ(svg.find(">?<"), std::string::npos) << "a trial without x is drawn at a category '?'";
}

// Training curves: loss-like and reward/accuracy metrics by default, the others named in a note; `curves:` lists
// the ones to draw instead (and the plots an earlier report drew and this one does not are removed).
TEST_F(Report, DrawsLossAndRewardCurvesByDefaultAndTheListedOnesWithCurves) {
  SKIP_WITHOUT_GNUPLOT();
  ASSERT_EQ(runner({write("rep.yaml", kSpec)}).status, 0);
  // Curves a trainer logs besides the loss, which the counter plugin does not: two to leave out, one to keep.
  for (const auto& row : query("SELECT id, attempt FROM trials").rows)
    for (int step = 0; step < 4; ++step)
      for (const char* name : {"lr", "tokens_per_s", "rewards/accuracy"})
        exec(fmt::format("INSERT INTO metrics (trial_id, attempt, stage, name, step, value, recorded_at) VALUES "
                         "({}, {}, 'train', '{}', {}, {}, '2026-01-01T00:00:00.000Z')",
                         row[0].text, row[1].text, name, step, 0.1 * (step + 1)));
  ASSERT_EQ(runner({"report", "rep"}).status, 0);
  const fs::path folder = report_folder();
  EXPECT_TRUE(fs::exists(folder / "curve-train_loss.svg"));
  EXPECT_TRUE(fs::exists(folder / "curve-train_rewards_accuracy.svg"));
  EXPECT_FALSE(fs::exists(folder / "curve-train_lr.svg"));
  EXPECT_FALSE(fs::exists(folder / "curve-train_tokens_per_s.svg"));
  std::string md = read_file(folder / "report.md"), html = read_file(folder / "report.html");
  EXPECT_NE(md.find("### Training curve: train/rewards/accuracy"), std::string::npos) << md;
  for (const std::string* doc : {&md, &html})
    EXPECT_NE(doc->find("2 more metric(s) with steps not drawn: train/lr, train/tokens_per_s (by default only curves "
                        "whose name has loss, accuracy, reward, margin or logps"), std::string::npos) << *doc;

  // The same experiment with curves: listed: a run of it (every trial reused) stores the file and writes the report.
  std::string spec = std::string(kSpec) + "  curves: [train/lr, nope/x]\n";
  ASSERT_EQ(runner({write("rep.yaml", spec)}).status, 0);
  EXPECT_TRUE(fs::exists(folder / "curve-train_lr.svg"));
  EXPECT_FALSE(fs::exists(folder / "curve-train_loss.svg"));  // the earlier report's, removed
  EXPECT_FALSE(fs::exists(folder / "curve-train_rewards_accuracy.svg"));
  EXPECT_TRUE(fs::exists(folder / "plot-1.svg"));
  md = read_file(folder / "report.md");
  EXPECT_NE(md.find("report.curves: 'nope/x' is not a metric with steps in this experiment"), std::string::npos) << md;
  EXPECT_NE(md.find("3 more metric(s) with steps not drawn: train/loss, train/rewards/accuracy, train/tokens_per_s "
                    "(not listed in report.curves"), std::string::npos) << md;

  // curves: all draws every one.
  spec = std::string(kSpec) + "  curves: all\n";
  ASSERT_EQ(runner({write("rep.yaml", spec)}).status, 0);
  for (const char* f : {"curve-train_loss.svg", "curve-train_lr.svg", "curve-train_rewards_accuracy.svg",
                        "curve-train_tokens_per_s.svg"})
    EXPECT_TRUE(fs::exists(folder / f)) << f;
  EXPECT_EQ(read_file(folder / "report.md").find("not drawn"), std::string::npos);
}
