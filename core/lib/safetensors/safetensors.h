// Reading and writing the safetensors checkpoint format (https://huggingface.co/docs/safetensors).
//
// What this is: a torch-free reader that mmaps one file and validates its header as strictly as the reference
// Rust implementation does (every error names the file and the tensor), a Checkpoint that presents a single
// model.safetensors or a sharded set (model.safetensors.index.json) as one name -> tensor lookup, and a writer
// whose output is byte-identical to Python's `safetensors.torch.save_file` for the same tensors and metadata,
// written atomically (temp file + fsync + rename).
// What this is not: a tensor library. Views are raw bytes plus dtype and shape; the model plugin wraps them in
// torch tensors. Only little-endian hosts are supported (the format is little-endian and we never byte-swap).
//
// File layout: u64 little-endian N | N bytes of JSON header (space-padded) | data region. The header maps each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end)} relative to the data region, plus an optional
// "__metadata__" string -> string map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mmr::safetensors {

// The dtypes of the format. The declaration order is the reference implementation's, which its writer uses to
// order tensors (larger alignment first), so keep it.
enum class Dtype : int {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
};

size_t dtype_size(Dtype dtype);            // bytes per element
const char* dtype_name(Dtype dtype);        // "F32", "BF16", ...
bool parse_dtype(const std::string& name, Dtype* out);   // false for an unknown name

// What the header says about one tensor. data_begin/data_end are absolute offsets into the file.
struct TensorInfo {
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  size_t data_begin = 0;
  size_t data_end = 0;

  int64_t numel() const;
  size_t nbytes() const { return data_end - data_begin; }
};

// A tensor's bytes inside a mapped file. Valid while the SafetensorsFile (or Checkpoint) that made it lives.
struct TensorView {
  const std::string* name = nullptr;
  const std::string* file = nullptr;
  const TensorInfo* info = nullptr;
  const uint8_t* data = nullptr;   // info->nbytes() bytes, little-endian, row-major; not necessarily aligned
};

// "[64, 48]"
std::string format_shape(const std::vector<int64_t>& shape);

// One .safetensors file, mapped read-only. Movable, not copyable; views point into the mapping.
class SafetensorsFile {
 public:
  // Maps and validates the whole header. Throws mmr::IoError if the file cannot be opened or mapped and
  // mmr::DataError (naming the file and, where one is at fault, the tensor) for any format violation.
  static SafetensorsFile open(const std::string& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;   // sorted by data offset (the order of the bytes in the file)
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }

  const TensorInfo& info(const std::string& name) const;   // throws DataError naming file and tensor
  TensorView view(const std::string& name) const;

  // Element values widened to float32: F32 as is, F16/BF16 converted exactly, F64 rounded to nearest.
  // Any other dtype throws DataError (file, tensor, dtype found).
  std::vector<float> to_float32(const std::string& name) const;
  // Integer tensors (I64, I32, I16, I8, U8, BOOL, U16, U32) widened to int64.
  std::vector<int64_t> to_int64(const std::string& name) const;

  // Throws DataError "<file>: tensor '<name>': expected shape [64, 48], found [64, 32]".
  void expect_shape(const std::string& name, const std::vector<int64_t>& expected) const;

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  void parse_header();

  std::string path_;
  const uint8_t* base_ = nullptr;   // the mapping, or nullptr for an empty file
  size_t size_ = 0;
  std::unordered_map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model's weights: one model.safetensors, or shards listed by model.safetensors.index.json, as one lookup.
class Checkpoint {
 public:
  // `path` is a .safetensors file, a *.safetensors.index.json, or a folder holding model.safetensors or
  // model.safetensors.index.json (the single file wins when both exist, as transformers does).
  // Index errors name the index file and the shard or tensor at fault.
  static Checkpoint open(const std::string& path);

  const std::string& path() const { return path_; }   // the file or index that was opened
  std::vector<std::string> names() const;             // sorted by name
  bool contains(const std::string& name) const { return owner_.count(name) != 0; }
  size_t size() const { return owner_.size(); }

  const SafetensorsFile& file_of(const std::string& name) const;   // the shard holding the tensor
  const TensorInfo& info(const std::string& name) const { return file_of(name).info(name); }
  TensorView view(const std::string& name) const { return file_of(name).view(name); }
  std::vector<float> to_float32(const std::string& name) const { return file_of(name).to_float32(name); }
  std::vector<int64_t> to_int64(const std::string& name) const { return file_of(name).to_int64(name); }
  void expect_shape(const std::string& name, const std::vector<int64_t>& expected) const {
    file_of(name).expect_shape(name, expected);
  }

  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  // The index's "metadata" (e.g. total_size), or the single file's __metadata__; values kept as JSON text
  // for non-string index values.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::unordered_map<std::string, const SafetensorsFile*> owner_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes one safetensors file exactly as Python's safetensors does: tensors ordered by
// dtype (larger first, in the Dtype order above) then by name, packed back to back; compact JSON header with
// "__metadata__" first, padded with spaces to a multiple of 8 bytes.
class Writer {
 public:
  // Raw little-endian bytes; their count must be numel(shape) * dtype_size(dtype). The bytes are copied.
  void add(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
           size_t nbytes);
  // As add(), without the copy: `data` must stay valid until the last serialize()/write(). For large
  // checkpoints, so saving does not double the memory.
  void add_borrowed(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, const void* data,
                    size_t nbytes);
  // float32 values stored as F32, F16 or BF16 (narrowed with round-to-nearest-even).
  void add_float(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values,
                 Dtype store_as = Dtype::F32);
  void add_int64(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& values);
  // Written as "__metadata__" (keys sorted); an empty map writes no "__metadata__", as save_file(metadata=None).
  void set_metadata(std::map<std::string, std::string> metadata) { metadata_ = std::move(metadata); }

  // The complete file as bytes (what write() puts on disk).
  std::vector<uint8_t> serialize() const;
  // Writes `path` atomically: a temp file in the same folder, fsync, rename over `path`, fsync the folder.
  // An interrupted write leaves either the old file or none, never half a file. Throws mmr::IoError.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;
    const uint8_t* data;          // points into `owned` or at the caller's buffer (add_borrowed)
    size_t nbytes;
    std::vector<uint8_t> owned;
  };
  Entry& new_entry(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, size_t nbytes);
  std::vector<const Entry*> file_order() const;
  std::string header() const;   // JSON, padded to a multiple of 8
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace mmr::safetensors
