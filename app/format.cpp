// Output formats for `runner results`, `runner query` and `runner score`.
#include "app/format.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace mmr {
namespace {

// Width in terminal columns of UTF-8 text (code points; good enough for labels and numbers).
size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string cell_text(const QueryCell& c, bool for_table) {
  if (c.type == QueryCell::Null) return for_table ? "-" : "";
  if (c.type == QueryCell::Real && for_table) {
    const double v = std::strtod(c.text.c_str(), nullptr);
    return fmt::format("{:.6g}", v);
  }
  return c.text;
}

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// An array of objects, one per row; numbers as JSON numbers, NULL as null.
void print_json(std::ostream& out, const QueryResult& r) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& row : r.rows) {
    nlohmann::json obj = nlohmann::json::object();
    for (size_t i = 0; i < r.columns.size(); ++i) {
      const QueryCell& c = row[i];
      switch (c.type) {
        case QueryCell::Null: obj[r.columns[i]] = nullptr; break;
        case QueryCell::Integer: obj[r.columns[i]] = std::stoll(c.text); break;
        case QueryCell::Real: obj[r.columns[i]] = std::strtod(c.text.c_str(), nullptr); break;
        default: obj[r.columns[i]] = c.text;
      }
    }
    arr.push_back(std::move(obj));
  }
  out << dump_text(arr, 2) << "\n";
}

// RFC 4180: a header line, then one line per row; NULL as an empty field.
void print_csv(std::ostream& out, const QueryResult& r) {
  for (size_t i = 0; i < r.columns.size(); ++i) out << (i ? "," : "") << csv_quote(r.columns[i]);
  out << "\n";
  for (const auto& row : r.rows) {
    for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << csv_quote(cell_text(row[i], false));
    out << "\n";
  }
}

// The width each column prints at: its widest cell or its name.
std::vector<size_t> column_widths(const QueryResult& r) {
  std::vector<size_t> width(r.columns.size());
  for (size_t i = 0; i < r.columns.size(); ++i) width[i] = display_width(r.columns[i]);
  for (const auto& row : r.rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], display_width(cell_text(row[i], true)));
  return width;
}

// Aligned columns under a dashed rule: numeric columns right-aligned, reals to 6 significant digits, NULL as "-".
void print_table(std::ostream& out, const QueryResult& r) {
  const std::vector<size_t> width = column_widths(r);
  std::vector<bool> numeric(r.columns.size(), true);
  for (const auto& row : r.rows)
    for (size_t i = 0; i < row.size(); ++i)
      if (row[i].type == QueryCell::Text || row[i].type == QueryCell::Blob) numeric[i] = false;
  auto emit = [&](size_t i, const std::string& s) {
    const std::string pad(width[i] - display_width(s), ' ');
    out << (i ? "  " : "") << (numeric[i] ? pad + s : s + (i + 1 < width.size() ? pad : ""));
  };
  for (size_t i = 0; i < r.columns.size(); ++i) emit(i, r.columns[i]);
  out << "\n";
  for (size_t i = 0; i < r.columns.size(); ++i) out << (i ? "  " : "") << std::string(width[i], '-');
  out << "\n";
  for (const auto& row : r.rows) {
    for (size_t i = 0; i < row.size(); ++i) emit(i, cell_text(row[i], true));
    out << "\n";
  }
  if (r.rows.empty()) out << "(no rows)\n";
}

}  // namespace

Format parse_format(const std::string& text) {
  if (text == "table") return Format::Table;
  if (text == "csv") return Format::Csv;
  if (text == "json") return Format::Json;
  throw ConfigError(fmt::format("--format '{}': expected table, csv or json", text));
}

void print_result(std::ostream& out, const QueryResult& r, Format format) {
  switch (format) {
    case Format::Json: return print_json(out, r);
    case Format::Csv: return print_csv(out, r);
    case Format::Table: return print_table(out, r);
  }
}

QueryResult with_columns(const QueryResult& r, const std::vector<size_t>& keep) {
  QueryResult out;
  for (size_t i : keep) out.columns.push_back(r.columns[i]);
  for (const auto& row : r.rows) {
    std::vector<QueryCell> cells;
    for (size_t i : keep) cells.push_back(row[i]);
    out.rows.push_back(std::move(cells));
  }
  return out;
}

// The columns of the first block: from the first, in order, as many as fit (at least one).
std::vector<size_t> first_block(const std::vector<size_t>& w, size_t width) {
  std::vector<size_t> cols;
  for (size_t i = 0, used = 0; i < w.size() && (cols.empty() || used + w[i] <= width); used += w[i++] + 2)
    cols.push_back(i);
  return cols;
}

void print_table_within(std::ostream& out, const QueryResult& r, size_t width,
                        const std::vector<std::string>& repeated) {
  const std::vector<size_t> w = column_widths(r);
  std::vector<size_t> cols = first_block(w, width);
  print_table(out, with_columns(r, cols));
  // The other blocks: the `repeated` columns, then as many of the columns left as fit (at least one).
  std::vector<size_t> keys;
  size_t keys_width = 0;
  for (size_t i = 0; i < r.columns.size(); ++i)
    if (std::find(repeated.begin(), repeated.end(), r.columns[i]) != repeated.end()) {
      keys.push_back(i);
      keys_width += w[i] + 2;
    }
  for (size_t next = cols.size(); next < w.size();) {
    cols = keys;
    for (size_t used = keys_width; next < w.size() && (cols.size() == keys.size() || used + w[next] <= width); ++next) {
      if (std::find(keys.begin(), keys.end(), next) != keys.end()) continue;
      used += w[next] + 2;
      cols.push_back(next);
    }
    if (cols.size() == keys.size()) break;  // only repeated columns were left
    out << "\n";
    print_table(out, with_columns(r, cols));
  }
}

size_t output_width() {
  if (const char* env = std::getenv("COLUMNS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n > 0) return static_cast<size_t>(n);
  }
  winsize ws{};
  if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 120;
}

}  // namespace mmr
