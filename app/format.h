// Printing query results as an aligned table (folded to a width on request), CSV (RFC 4180) or JSON (an array of
// objects).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "core/store.h"

namespace mmr {

enum class Format { Table, Csv, Json };

// Throws ConfigError for anything but table, csv, json.
Format parse_format(const std::string& text);

void print_result(std::ostream& out, const QueryResult& result, Format format);

// A table folded to `width`: printed as print_result's table when it fits, else in blocks of columns one under
// the other (a blank line between): the first block holds the first columns, in order, as many as fit; each
// further block the `repeated` columns (the ones that say which row is which), then as many of the columns left as
// fit. A block holds at least one column however wide it is.
void print_table_within(std::ostream& out, const QueryResult& result, size_t width,
                        const std::vector<std::string>& repeated);

// The columns `keep` of `result` (indices), in that order.
QueryResult with_columns(const QueryResult& result, const std::vector<size_t>& keep);

// The width to fit: $COLUMNS when it is a positive number, else the terminal's when stdout is one, else 120.
size_t output_width();

}  // namespace mmr
