// `runner report` end to end: a real run with the test plugins (a counter stage with a per-step loss, a line
// counting benchmark), then the report, opened in headless Chromium: the screenshot's plot regions must be drawn
// (non-background pixels of several colours) and the tables of the rendered page must hold the numbers the store
// recorded. Also: the Markdown twin, warnings for a report: section naming unknown keys and metrics, --out, and
// exit status 2 for bad input.
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
    - {title: "Broken plot", x: train.start, y: nope/x, colour: red}
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

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin");
  for (std::string d; std::getline(dirs, d, ':');)
    if (!d.empty() && access((fs::path(d) / name).c_str(), X_OK) == 0) return (fs::path(d) / name).string();
  return "";
}

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
    EXPECT_NE(doc->find("metric 'nope/metric' was not recorded"), std::string::npos);
    EXPECT_NE(doc->find("rows: 'method' is not a key of the trial labels"), std::string::npos);
    EXPECT_NE(doc->find("unknown field 'colour' ignored"), std::string::npos);
    EXPECT_NE(doc->find("metric 'nope/x' was not recorded"), std::string::npos);
  }
  EXPECT_NE(md.find("](plot-1.svg)"), std::string::npos);
  EXPECT_NE(md.find("](curve-train_loss.svg)"), std::string::npos);
  EXPECT_NE(md.find("| train.start=1.0 |"), std::string::npos) << md;  // the default table, transposed
  // Each trial's log and artifacts, linked relative to the report's folder.
  const std::string trial = fs::path(query("SELECT artifact_dir FROM trials WHERE ordinal = 0").rows.at(0).at(0).text)
                                .filename().string();
  EXPECT_NE(html.find("href=\"../" + trial + "/trial.log\""), std::string::npos);
  EXPECT_NE(html.find("href=\"../" + trial + "/train/curve.txt\""), std::string::npos);
  EXPECT_NE(md.find("](<../" + trial + "/trial.log>)"), std::string::npos);
  EXPECT_TRUE(fs::exists(folder / ".." / trial / "trial.log"));
}

TEST_F(Report, ChromiumShowsDrawnPlotsAndTablesHoldingTheStoresNumbers) {
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
  for (const auto& [cell, metrics] : values)
    for (const auto& [metric, v] : metrics) {
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
  r = runner({"report", "rep", "--out", (dir_ / "elsewhere").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir_ / "elsewhere" / "report.html"));
  EXPECT_TRUE(fs::exists(dir_ / "elsewhere" / "plot-1.svg"));
  EXPECT_FALSE(fs::exists(report_folder()));
}
