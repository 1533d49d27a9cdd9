// What the fuzz targets share. Each target (fuzz/fuzz_<name>.cpp) feeds libFuzzer's bytes to a real parser and
// catches only the exception types that parser documents for bad input; anything else (a crash, a sanitizer
// report, another exception type escaping LLVMFuzzerTestOneInput, a timeout, running out of memory) is a finding.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>

namespace mmr::fuzz {

inline std::string text(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// A folder of this process's own (targets that read files write their input there; fuzz.sh runs targets in
// parallel, so the pid keeps them apart). Left behind on exit: libFuzzer ends the process with _exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("mmr-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes the input to scratch_dir()/name (replacing the last one) and returns the path, for parsers that read files.
inline std::string write_input(std::string_view name, const uint8_t* data, size_t size) {
  const std::string path = (scratch_dir() / std::string(name)).string();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs fn; an exception of one of the types `Errors` (what the parser documents for bad input) ends it quietly,
// any other goes on to libFuzzer, which reports it.
template <typename... Errors, typename Fn>
void bad_input_is(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    if (!(... || (dynamic_cast<const Errors*>(&e) != nullptr))) throw;
  }
}

}  // namespace mmr::fuzz
