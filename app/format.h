// Printing query results as an aligned table, CSV (RFC 4180) or JSON (an array of objects).
#pragma once

#include <ostream>
#include <string>

#include "core/store.h"

namespace mmr {

enum class Format { Table, Csv, Json };

// Throws ConfigError for anything but table, csv, json.
Format parse_format(const std::string& text);

void print_result(std::ostream& out, const QueryResult& result, Format format);

}  // namespace mmr
