// The protobuf-clash regression test (DESIGN §5): a process that links libtorch (and with it the system
// libprotobuf 3.21) loads the SentencePiece module (Debian's libsentencepiece embeds protobuf 3.14) and
// tokenizes. Linked without RTLD_DEEPBIND this process segfaults at load; here it must work.
//
// Deliberately torch-header-free: linking libtorch is what brings the other protobuf in; compiling against it
// would only cost time.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "core/lib/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace {

fs::path reference_dir() {
  if (const char* env = std::getenv("LLAVA_REFERENCE_DIR"); env != nullptr && *env != '\0') return env;
  return fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
}

bool mapped(const std::string& name) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find(name) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST(TokenizerInTorchProcess, EncodesWhileLibtorchsProtobufIsLoaded) {
  // Without libtorch's protobuf in the process this test would prove nothing.
  ASSERT_TRUE(mapped("libtorch")) << "libtorch is not loaded; check the link options of this test";
  if (!mapped("libprotobuf")) {
    // PyTorch wheels' LibTorch links protobuf statically and hides it: no second protobuf, nothing to clash.
    GTEST_SKIP() << "this LibTorch loads no shared libprotobuf, so the Debian clash cannot happen here";
  }

  const auto tok = mmr::Tokenizer::load((reference_dir() / "model").string());
  EXPECT_TRUE(mapped("libsentencepiece"));

  std::ifstream in(reference_dir() / "expected" / "sp_encode.jsonl");
  std::string line;
  int compared = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line);
    EXPECT_EQ(tok->encode_sentencepiece(row["text"].get<std::string>()), row["ids"].get<std::vector<int64_t>>());
    ++compared;
  }
  EXPECT_GT(compared, 0);
}
