// The safetensors reader (core/lib/safetensors): the u64 length + JSON header of one file, the tensors' bytes it
// points at, and a sharded checkpoint's model.safetensors.index.json. An input starting with '{' is read as an
// index (beside one real shard, model-00001-of-00001.safetensors, holding tensors "a" and "b"); anything else as
// a .safetensors file. Bad input is a DataError (IoError only for files that cannot be opened: an index may name
// a shard that is not there).
#include "core/api/error.h"
#include "core/lib/safetensors/safetensors.h"
#include "fuzz/fuzz.h"

namespace {

namespace st = mmr::safetensors;

// Every tensor's values, through the converter its dtype has.
template <typename File>
void read_all(const File& file) {
  for (const std::string& name : file.names()) {
    const st::TensorInfo& info = file.info(name);
    (void)file.view(name);
    switch (info.dtype) {
      case st::Dtype::F32: case st::Dtype::F16: case st::Dtype::BF16: case st::Dtype::F64:
        (void)file.to_float32(name);
        break;
      default:
        (void)file.to_int64(name);
    }
  }
}

void write_shard_once() {
  static const bool written = [] {
    st::Writer w;
    w.add_float("a", {2, 2}, {1, 2, 3, 4});
    w.add_int64("b", {3}, {5, 6, 7});
    w.write((mmr::fuzz::scratch_dir() / "model-00001-of-00001.safetensors").string());
    return true;
  }();
  (void)written;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    if (size > 0 && data[0] == '{') {
      write_shard_once();
      read_all(st::Checkpoint::open(mmr::fuzz::write_input("model.safetensors.index.json", data, size)));
    } else {
      read_all(st::SafetensorsFile::open(mmr::fuzz::write_input("model.safetensors", data, size)));
    }
  } catch (const mmr::DataError&) {
  } catch (const mmr::IoError&) {
  }
  return 0;
}
