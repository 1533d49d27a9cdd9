// The safetensors writer.
//
// What this is: the reference writer's layout (huggingface/safetensors, tensor.rs `prepare`) reproduced exactly:
// tensors sorted by dtype, larger first in the Dtype enum's order, then by name; data packed back to back with
// no padding between tensors (the dtype order already keeps every tensor aligned to its element size); compact
// JSON header with "__metadata__" first and tensors in file order; header padded with spaces to a multiple of 8
// so the data region starts 8-aligned. For the same tensors and metadata the bytes equal save_file's.
// What this is not: a streaming writer for tensors that do not fit in memory (add_borrowed avoids the copy only).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/api/error.h"
#include "core/lib/safetensors/half.h"
#include "core/lib/safetensors/safetensors.h"

namespace mmr::safetensors {
namespace {

namespace fs = std::filesystem;

int64_t checked_numel(const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw DataError(fmt::format("tensor '{}': shape {} has a negative dimension", name, format_shape(shape)));
    n *= d;
  }
  return n;
}

// Writes all of [p, p + n), retrying short writes and EINTR.
bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

Writer::Entry& Writer::new_entry(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape,
                                 size_t nbytes) {
  if (name == "__metadata__") throw DataError("tensor name '__metadata__' is reserved by the safetensors format");
  for (const Entry& e : entries_) {
    if (e.name == name) throw DataError(fmt::format("tensor '{}': added twice to the same safetensors file", name));
  }
  const int64_t numel = checked_numel(name, shape);
  const size_t expected = static_cast<size_t>(numel) * dtype_size(dtype);
  if (nbytes != expected) {
    throw DataError(fmt::format("tensor '{}': dtype {} and shape {} need {} bytes, found {}", name, dtype_name(dtype),
                                format_shape(shape), expected, nbytes));
  }
  entries_.push_back(Entry{name, dtype, shape, nullptr, nbytes, {}});
  return entries_.back();
}

void Writer::add(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
                 size_t nbytes) {
  Entry& e = new_entry(name, dtype, shape, nbytes);
  const auto* p = static_cast<const uint8_t*>(data);
  e.owned.assign(p, p + nbytes);
  e.data = e.owned.data();   // a vector's buffer survives moves of the vector, so this stays valid
}

void Writer::add_borrowed(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
                          size_t nbytes) {
  Entry& e = new_entry(name, dtype, shape, nbytes);
  e.data = static_cast<const uint8_t*>(data);
}

void Writer::add_float(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values,
                       Dtype store_as) {
  if (static_cast<int64_t>(values.size()) != checked_numel(name, shape)) {
    throw DataError(fmt::format("tensor '{}': shape {} needs {} values, found {}", name, format_shape(shape),
                                checked_numel(name, shape), values.size()));
  }
  std::vector<uint8_t> bytes;
  switch (store_as) {
    case Dtype::F32:
      bytes.resize(values.size() * 4);
      if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
      break;
    case Dtype::F16:
    case Dtype::BF16:
      bytes.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t h = store_as == Dtype::F16 ? float_to_f16(values[i]) : float_to_bf16(values[i]);
        bytes[2 * i] = static_cast<uint8_t>(h & 0xff);
        bytes[2 * i + 1] = static_cast<uint8_t>(h >> 8);
      }
      break;
    default:
      throw DataError(fmt::format("tensor '{}': float values can be stored as F32, F16 or BF16, not {}", name,
                                  dtype_name(store_as)));
  }
  Entry& e = new_entry(name, store_as, shape, bytes.size());
  e.owned = std::move(bytes);
  e.data = e.owned.data();
}

void Writer::add_int64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& values) {
  add(name, Dtype::I64, shape, values.data(), values.size() * sizeof(int64_t));
}

std::vector<const Writer::Entry*> Writer::file_order() const {
  std::vector<const Entry*> order;
  order.reserve(entries_.size());
  for (const Entry& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    if (a->dtype != b->dtype) return static_cast<int>(a->dtype) > static_cast<int>(b->dtype);
    return a->name < b->name;   // byte-wise, as Rust's String ordering
  });
  return order;
}

std::string Writer::header() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    nlohmann::ordered_json md = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) md[k] = v;
    h["__metadata__"] = std::move(md);
  }
  size_t offset = 0;
  for (const Entry* e : file_order()) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = dtype_name(e->dtype);
    t["shape"] = e->shape;
    t["data_offsets"] = {offset, offset + e->nbytes};
    offset += e->nbytes;
    h[e->name] = std::move(t);
  }
  std::string text;
  try {
    text = h.dump();   // compact, UTF-8 kept as is: the same bytes as serde_json::to_string
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("cannot write safetensors header (tensor names and metadata must be UTF-8): {}",
                                e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

std::vector<uint8_t> Writer::serialize() const {
  const std::string h = header();
  std::vector<uint8_t> out;
  size_t total = 8 + h.size();
  for (const Entry& e : entries_) total += e.nbytes;
  out.reserve(total);
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  for (const Entry* e : file_order()) out.insert(out.end(), e->data, e->data + e->nbytes);
  return out;
}

void Writer::write(const std::string& path) const {
  const std::string h = header();
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // Same folder as the target, so rename() is atomic (same file system); pid + counter keep concurrent writers
  // (threads or ranks) from sharing a temp file.
  static std::atomic<unsigned> counter{0};
  const fs::path tmp = folder / fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(), counter++);

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) {
    throw IoError(fmt::format("{}: cannot create temp file {} for writing: {}", path, tmp.string(),
                              std::strerror(errno)));
  }
  auto fail = [&](const char* what) {
    std::string reason = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw IoError(fmt::format("{}: {} (via temp file {}): {}", path, what, tmp.string(), reason));
  };

  uint8_t len[8];
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!write_all(fd, len, 8) || !write_all(fd, reinterpret_cast<const uint8_t*>(h.data()), h.size())) {
    fail("cannot write header");
  }
  for (const Entry* e : file_order()) {
    if (!write_all(fd, e->data, e->nbytes)) fail("cannot write tensor data");
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  if (::close(fd) != 0) {
    fd = -1;
    fail("cannot close");
  }
  fd = -1;
  if (::rename(tmp.c_str(), target.c_str()) != 0) fail("cannot rename temp file into place");

  // Make the rename itself durable. A folder that cannot be opened or synced (some network file systems) is not
  // an error: the file is complete either way.
  int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    (void)::fsync(dir);
    ::close(dir);
  }
}

}  // namespace mmr::safetensors
