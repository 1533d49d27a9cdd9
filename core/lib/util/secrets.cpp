// See secrets.h.
#include "core/lib/util/secrets.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

namespace mmr {
namespace {

struct Secrets {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> values;  // value, what is shown instead
  std::atomic<bool> any{false};
};

Secrets& secrets() {
  static Secrets s;
  return s;
}

}  // namespace

void register_secret(const std::string& value, const std::string& shown) {
  if (value.size() < 8) return;
  Secrets& s = secrets();
  std::lock_guard<std::mutex> lock(s.mutex);
  for (const auto& [v, _] : s.values)
    if (v == value) return;
  s.values.emplace_back(value, shown);
  // Longest first: a secret that contains another is replaced whole.
  std::sort(s.values.begin(), s.values.end(), [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  s.any = true;
}

bool any_secret() { return secrets().any.load(); }

std::string redact_secrets(std::string text) {
  Secrets& s = secrets();
  if (!s.any.load()) return text;
  std::lock_guard<std::mutex> lock(s.mutex);
  for (const auto& [value, shown] : s.values)
    for (size_t at = text.find(value); at != std::string::npos; at = text.find(value, at + shown.size()))
      text.replace(at, value.size(), shown);
  return text;
}

}  // namespace mmr
