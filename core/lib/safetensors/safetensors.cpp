// The safetensors reader (SafetensorsFile) and the sharded-checkpoint lookup (Checkpoint).
//
// What this is: mmap + a header validator that accepts exactly what the reference Rust implementation
// (huggingface/safetensors, SafeTensors::read_metadata + Metadata::validate) accepts, with errors that say which
// file and which tensor is wrong and what was expected.
// What this is not: a loader into torch; see the model plugin. The writer lives in writer.cpp.
#include "core/lib/safetensors/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/api/error.h"
#include "core/lib/safetensors/half.h"
#include "core/lib/util/json_safe.h"

namespace mmr::safetensors {
namespace {

namespace fs = std::filesystem;

// The reference reader refuses headers above 100 MB (MAX_HEADER_SIZE); a larger value is a corrupt length.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

constexpr const char* kDtypeNames[] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
                                       "BF16", "I32", "U32", "F32",     "F64",     "I64", "U64"};

[[noreturn]] void data_error(const std::string& file, const std::string& message) {
  throw DataError(fmt::format("{}: {}", file, message));
}

[[noreturn]] void tensor_error(const std::string& file, const std::string& tensor, const std::string& message) {
  throw DataError(fmt::format("{}: tensor '{}': {}", file, tensor, message));
}

std::string os_reason() { return std::strerror(errno); }

// The name in `names` sharing the longest prefix plus suffix with `wanted`: a hint for typos and for naming-scheme
// mixups ("vision_tower.vision_model.embeddings.x" vs "vision_tower.embeddings.x").
std::string closest_name(const std::string& wanted, const std::vector<std::string>& names) {
  std::string best;
  size_t best_score = 0;
  for (const auto& n : names) {
    const size_t limit = std::min(n.size(), wanted.size());
    size_t prefix = 0;
    while (prefix < limit && n[prefix] == wanted[prefix]) ++prefix;
    size_t suffix = 0;
    while (suffix < limit - prefix && n[n.size() - 1 - suffix] == wanted[wanted.size() - 1 - suffix]) ++suffix;
    if (prefix + suffix > best_score) {
      best_score = prefix + suffix;
      best = n;
    }
  }
  return best;
}

std::string missing_tensor_message(const std::string& name, const std::vector<std::string>& names) {
  std::string msg = fmt::format("no tensor '{}' among its {} tensors", name, names.size());
  std::string hint = closest_name(name, names);
  if (!hint.empty()) msg += fmt::format("; closest name: '{}'", hint);
  return msg;
}

}  // namespace

size_t dtype_size(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL:
    case Dtype::U8:
    case Dtype::I8:
    case Dtype::F8_E5M2:
    case Dtype::F8_E4M3:
      return 1;
    case Dtype::I16:
    case Dtype::U16:
    case Dtype::F16:
    case Dtype::BF16:
      return 2;
    case Dtype::I32:
    case Dtype::U32:
    case Dtype::F32:
      return 4;
    case Dtype::F64:
    case Dtype::I64:
    case Dtype::U64:
      return 8;
  }
  MMR_CHECK(false, "bad Dtype " << static_cast<int>(dtype));
  return 0;
}

const char* dtype_name(Dtype dtype) {
  auto i = static_cast<size_t>(dtype);
  MMR_CHECK(i < std::size(kDtypeNames), "bad Dtype " << i);
  return kDtypeNames[i];
}

bool parse_dtype(const std::string& name, Dtype* out) {
  for (size_t i = 0; i < std::size(kDtypeNames); ++i) {
    if (name == kDtypeNames[i]) {
      *out = static_cast<Dtype>(i);
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string format_shape(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// ---------------------------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile file;
  file.path_ = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(fmt::format("{}: cannot open safetensors file for reading: {}", path, os_reason()));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    std::string reason = os_reason();
    ::close(fd);
    throw IoError(fmt::format("{}: cannot stat: {}", path, reason));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(fmt::format("{}: not a regular file", path));
  }
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ > 0) {
    void* p = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string reason = os_reason();
      ::close(fd);
      throw IoError(fmt::format("{}: cannot mmap {} bytes: {}", path, file.size_, reason));
    }
    file.base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);   // the mapping keeps the file alive

  file.parse_header();   // on throw, the destructor unmaps
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
    path_ = std::move(other.path_);
    base_ = other.base_;
    size_ = other.size_;
    tensors_ = std::move(other.tensors_);
    metadata_ = std::move(other.metadata_);
    other.base_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (base_) ::munmap(const_cast<uint8_t*>(base_), size_);
}

namespace {

// A tensor's place in the data region, for the tiling check.
struct Span {
  size_t begin, end;
  const std::string* name;
};

// The header's JSON object and where the data region starts (8 + the little-endian u64 header length).
std::pair<nlohmann::json, size_t> read_header(const std::string& file, const uint8_t* base, size_t size) {
  if (size < 8) data_error(file, fmt::format("file is {} bytes, too short for the 8-byte header length (truncated file?)", size));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian u64
  if (header_len > kMaxHeaderSize)
    data_error(file, fmt::format("header length {} exceeds the format's limit of {} bytes (corrupt or not a "
                                 "safetensors file)", header_len, kMaxHeaderSize));
  if (header_len > size - 8)
    data_error(file, fmt::format("header length {} is beyond the file size: expected at most {} bytes after the "
                                 "8-byte length, found a {}-byte file (truncated file?)", header_len, size - 8, size));
  const char* begin = reinterpret_cast<const char*>(base + 8);
  nlohmann::json header;
  try {
    header = parse_json_limited(begin, begin + header_len);
  } catch (const std::exception& e) {
    data_error(file, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) data_error(file, fmt::format("header must be a JSON object, found {}", header.type_name()));
  return {std::move(header), 8 + static_cast<size_t>(header_len)};
}

void read_metadata(const std::string& file, const nlohmann::json& entry, std::map<std::string, std::string>& out) {
  if (!entry.is_object())
    data_error(file, fmt::format("'__metadata__' must be an object of strings, found {}", entry.type_name()));
  for (auto m = entry.begin(); m != entry.end(); ++m) {
    if (!m.value().is_string())
      data_error(file, fmt::format("'__metadata__' key '{}': expected a string value, found {}", m.key(),
                                   m.value().type_name()));
    out[m.key()] = m.value().get<std::string>();
  }
}

// dtype and shape of one entry; returns the byte count they need (numel * dtype size, checked for overflow: the
// reference reports ValidationOverflow).
uint64_t read_dtype_and_shape(const std::string& file, const std::string& name, const nlohmann::json& entry,
                              TensorInfo& info) {
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) tensor_error(file, name, "missing string key 'dtype'");
  const std::string dtype = dtype_it->get<std::string>();
  if (!parse_dtype(dtype, &info.dtype))
    tensor_error(file, name, fmt::format("unknown dtype '{}'; expected one of {}", dtype,
                                         fmt::join(std::begin(kDtypeNames), std::end(kDtypeNames), ", ")));
  auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array()) tensor_error(file, name, "missing array key 'shape'");
  uint64_t nbytes = dtype_size(info.dtype);
  bool overflow = false;
  for (const auto& d : *shape_it) {
    if (!d.is_number_unsigned())
      tensor_error(file, name, fmt::format("shape {} must hold non-negative integers", shape_it->dump()));
    const uint64_t dim = d.get<uint64_t>();
    if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) overflow = true;
    if (dim != 0 && nbytes > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
    nbytes *= dim;
    info.shape.push_back(static_cast<int64_t>(dim));
  }
  if (overflow) tensor_error(file, name, fmt::format("shape {} overflows the byte count", shape_it->dump()));
  return nbytes;
}

// One tensor entry: dtype, shape and data_offsets, checked against each other and the data region.
TensorInfo read_tensor_info(const std::string& file, const std::string& name, const nlohmann::json& entry,
                            size_t data_start, size_t data_size) {
  if (!entry.is_object()) tensor_error(file, name, fmt::format("expected an object, found {}", entry.type_name()));
  TensorInfo info;
  const uint64_t nbytes = read_dtype_and_shape(file, name, entry, info);
  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
    tensor_error(file, name, "missing or malformed 'data_offsets': expected [begin, end] (non-negative integers)");
  const uint64_t begin = (*offsets_it)[0].get<uint64_t>(), end = (*offsets_it)[1].get<uint64_t>();
  if (end < begin) tensor_error(file, name, fmt::format("data_offsets [{}, {}] end before begin", begin, end));
  if (end > data_size)
    tensor_error(file, name, fmt::format("data_offsets [{}, {}] out of bounds: the data region is {} bytes "
                                         "(truncated file?)", begin, end, data_size));
  if (end - begin != nbytes)
    tensor_error(file, name, fmt::format("dtype {} and shape {} need {} bytes, but data_offsets [{}, {}] span {} "
                                         "bytes", dtype_name(info.dtype), format_shape(info.shape), nbytes, begin,
                                         end, end - begin));
  info.data_begin = data_start + static_cast<size_t>(begin);
  info.data_end = data_start + static_cast<size_t>(end);
  return info;
}

// As the reference: sorted by offsets the tensors must tile the data region exactly, with no gap, no overlap and
// nothing left over.
void check_tiling(const std::string& file, std::vector<Span> spans, size_t data_start, size_t file_size) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  size_t expected_begin = data_start;
  const std::string* previous = nullptr;
  for (const Span& s : spans) {
    if (s.begin < expected_begin)
      tensor_error(file, *s.name, fmt::format("data_offsets [{}, {}] overlap tensor '{}' (which ends at {})",
                                              s.begin - data_start, s.end - data_start, *previous,
                                              expected_begin - data_start));
    if (s.begin > expected_begin)
      tensor_error(file, *s.name, fmt::format("data_offsets [{}, {}] leave a gap: expected the tensor to start at "
                                              "{}, where {} ends", s.begin - data_start, s.end - data_start,
                                              expected_begin - data_start,
                                              previous ? "tensor '" + *previous + "'" : std::string("the header")));
    expected_begin = s.end;
    previous = s.name;
  }
  if (expected_begin != file_size)
    data_error(file, fmt::format("the tensors cover {} bytes of the {}-byte data region; the data region must be "
                                 "fully covered (extra bytes at the end of the file?)", expected_begin - data_start,
                                 file_size - data_start));
}

}  // namespace

void SafetensorsFile::parse_header() {
  const auto [header, data_start] = read_header(path_, base_, size_);
  const size_t data_size = size_ - data_start;
  std::vector<Span> spans;
  spans.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      read_metadata(path_, it.value(), metadata_);
      continue;
    }
    auto [pos, inserted] = tensors_.emplace(it.key(), read_tensor_info(path_, it.key(), it.value(), data_start, data_size));
    MMR_CHECK(inserted, "duplicate key after JSON parsing: " << it.key());
    spans.push_back({pos->second.data_begin, pos->second.data_end, &pos->first});
  }
  check_tiling(path_, std::move(spans), data_start, size_);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::pair<size_t, const std::string*>> order;
  order.reserve(tensors_.size());
  for (const auto& [name, info] : tensors_) order.emplace_back(info.data_begin, &name);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : *a.second < *b.second;
  });
  std::vector<std::string> out;
  out.reserve(order.size());
  for (const auto& o : order) out.push_back(*o.second);
  return out;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) data_error(path_, missing_tensor_message(name, names()));
  return it->second;
}

TensorView SafetensorsFile::view(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) data_error(path_, missing_tensor_message(name, names()));
  return TensorView{&it->first, &path_, &it->second, base_ + it->second.data_begin};
}

std::vector<float> SafetensorsFile::to_float32(const std::string& name) const {
  TensorView v = view(name);
  const size_t n = static_cast<size_t>(v.info->numel());
  std::vector<float> out(n);
  const uint8_t* p = v.data;
  switch (v.info->dtype) {
    case Dtype::F32:
      if (n) std::memcpy(out.data(), p, n * 4);
      break;
    case Dtype::F16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      break;
    case Dtype::BF16:
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_float(static_cast<uint16_t>(p[2 * i] | (p[2 * i + 1] << 8)));
      break;
    case Dtype::F64:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    default:
      tensor_error(path_, name, fmt::format("dtype {} cannot be read as float32; expected F32, F16, BF16 or F64",
                                            dtype_name(v.info->dtype)));
  }
  return out;
}

std::vector<int64_t> SafetensorsFile::to_int64(const std::string& name) const {
  TensorView v = view(name);
  const size_t n = static_cast<size_t>(v.info->numel());
  std::vector<int64_t> out(n);
  const uint8_t* p = v.data;
  auto widen = [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < n; ++i) {
      T x;
      std::memcpy(&x, p + sizeof(T) * i, sizeof(T));
      out[i] = static_cast<int64_t>(x);
    }
  };
  switch (v.info->dtype) {
    case Dtype::I64: widen(int64_t{}); break;
    case Dtype::I32: widen(int32_t{}); break;
    case Dtype::I16: widen(int16_t{}); break;
    case Dtype::I8: widen(int8_t{}); break;
    case Dtype::U8:
    case Dtype::BOOL: widen(uint8_t{}); break;
    case Dtype::U16: widen(uint16_t{}); break;
    case Dtype::U32: widen(uint32_t{}); break;
    default:
      tensor_error(path_, name, fmt::format("dtype {} cannot be read as int64; expected an integer or BOOL dtype",
                                            dtype_name(v.info->dtype)));
  }
  return out;
}

void SafetensorsFile::expect_shape(const std::string& name, const std::vector<int64_t>& expected) const {
  const TensorInfo& i = info(name);
  if (i.shape != expected) {
    tensor_error(path_, name, fmt::format("expected shape {}, found {}", format_shape(expected), format_shape(i.shape)));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Reads model.safetensors.index.json: {"metadata": {...}, "weight_map": {tensor: shard file name}}.
void open_index(const std::string& index_path, std::vector<std::unique_ptr<SafetensorsFile>>* shards,
                std::unordered_map<std::string, const SafetensorsFile*>* owner,
                std::map<std::string, std::string>* metadata) {
  std::ifstream in(index_path);
  if (!in) throw IoError(fmt::format("{}: cannot open checkpoint index for reading: {}", index_path, os_reason()));
  nlohmann::json index;
  try {
    index = parse_json_limited(in);
  } catch (const std::exception& e) {
    data_error(index_path, fmt::format("index is not valid JSON: {}", e.what()));
  }
  if (!index.is_object()) data_error(index_path, "expected a JSON object with a 'weight_map'");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) {
    data_error(index_path, "missing object 'weight_map' (tensor name -> shard file)");
  }
  if (wm->empty()) data_error(index_path, "'weight_map' is empty");
  if (auto md = index.find("metadata"); md != index.end() && md->is_object()) {
    for (auto it = md->begin(); it != md->end(); ++it) {
      (*metadata)[it.key()] = it.value().is_string() ? it.value().get<std::string>() : dump_text(it.value());
    }
  }

  const fs::path folder = fs::path(index_path).parent_path();
  std::map<std::string, const SafetensorsFile*> by_shard;   // shard file name -> opened file
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    const std::string& tensor = it.key();
    if (!it.value().is_string()) {
      data_error(index_path, fmt::format("weight_map['{}']: expected a shard file name, found {}", tensor,
                                         dump_text(it.value())));
    }
    const std::string shard = it.value().get<std::string>();
    // Shards sit beside the index (as transformers saves them): a path elsewhere ("../../etc/passwd") is refused.
    if (shard.empty() || shard == "." || shard == ".." || shard.find_first_of("/\\") != std::string::npos)
      data_error(index_path, fmt::format("weight_map['{}']: '{}' is not a file name in the checkpoint folder", tensor,
                                         shard));
    auto found = by_shard.find(shard);
    if (found == by_shard.end()) {
      const std::string shard_path = (folder / shard).string();
      std::error_code ec;
      if (!fs::is_regular_file(shard_path, ec)) {
        data_error(index_path, fmt::format("weight_map['{}'] names shard '{}', but {} does not exist", tensor, shard,
                                           shard_path));
      }
      shards->push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(shard_path)));
      found = by_shard.emplace(shard, shards->back().get()).first;
    }
    if (!found->second->contains(tensor)) {
      data_error(index_path, fmt::format("weight_map['{}'] names shard '{}', but that shard has no such tensor",
                                         tensor, found->second->path()));
    }
    (*owner)[tensor] = found->second;
  }

  // Tensors in a shard that the index does not list are unreachable through the index (transformers ignores them
  // too); say so rather than dropping them silently.
  size_t unlisted = 0;
  for (const auto& s : *shards) {
    for (const auto& name : s->names()) {
      if (!owner->count(name)) ++unlisted;
    }
  }
  if (unlisted) {
    spdlog::warn("{}: {} tensor(s) in the shards are not listed in weight_map and are ignored", index_path, unlisted);
  }
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  Checkpoint ckpt;
  std::error_code ec;
  std::string target = path;
  if (fs::is_directory(path, ec)) {
    const fs::path single = fs::path(path) / "model.safetensors";
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    if (fs::is_regular_file(single, ec)) {
      target = single.string();
    } else if (fs::is_regular_file(index, ec)) {
      target = index.string();
    } else {
      throw DataError(fmt::format("{}: no checkpoint in folder: expected model.safetensors or "
                                  "model.safetensors.index.json",
                                  path));
    }
  }
  ckpt.path_ = target;
  if (ends_with(target, ".json")) {
    open_index(target, &ckpt.shards_, &ckpt.owner_, &ckpt.metadata_);
  } else {
    ckpt.shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(target)));
    const SafetensorsFile* f = ckpt.shards_.back().get();
    for (const auto& name : f->names()) ckpt.owner_[name] = f;
    ckpt.metadata_ = f->metadata();
  }
  return ckpt;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(owner_.size());
  for (const auto& kv : owner_) out.push_back(kv.first);
  std::sort(out.begin(), out.end());
  return out;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = owner_.find(name);
  if (it == owner_.end()) data_error(path_, missing_tensor_message(name, names()));
  return *it->second;
}

}  // namespace mmr::safetensors
