// The world's small enums (shapes, question types, text task types, candidate kinds) run 0..n-1, and each value
// has one fixed name that configs and output files use. EnumNames holds that table once per enum and turns
// values into names and back.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "core/api/error.h"

namespace mmr::synthetic {

template <class E>
class EnumNames {
 public:
  // `names` in enum order; `what` and `plural` word the error ("shape", "shapes").
  EnumNames(std::vector<std::string> names, std::string what, std::string plural)
      : names_(std::move(names)), what_(std::move(what)), plural_(std::move(plural)) {
    for (size_t i = 0; i < names_.size(); ++i) values_.push_back(static_cast<E>(i));
  }

  const std::vector<E>& values() const { return values_; }
  const std::string& name(E value) const { return names_[static_cast<size_t>(value)]; }

  // Throws mmr::ConfigError naming `key`, the unknown name and the known ones.
  E from_name(const std::string& name, const std::string& key) const {
    for (size_t i = 0; i < names_.size(); ++i)
      if (names_[i] == name) return values_[i];
    throw ConfigError(
        fmt::format("{}: unknown {} '{}'; known {}: {}", key, what_, name, plural_, fmt::join(names_, ", ")));
  }

 private:
  std::vector<std::string> names_;
  std::string what_, plural_;
  std::vector<E> values_;
};

}  // namespace mmr::synthetic
