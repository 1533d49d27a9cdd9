// The LLaMA tokenizer as LLaVA-1.5 trained with it: transformers 4.31's slow LlamaTokenizer (legacy) on top of
// SentencePiece, torch-free.
//
// SentencePiece itself lives in libmmr_sentencepiece.so, loaded deep-bound at run time (DESIGN §5: its embedded
// protobuf 3.14 must never meet libtorch's 3.21). A Tokenizer keeps that library mapped for as long as it lives.
//
// What is here: loading tokenizer.model plus the checkpoint's special ids, encode with the slow tokenizer's
// special-token handling, plain SentencePiece encode/decode, piece <-> id.
// Deliberately not here: chat templates, <image> handling and label masking (llava_text.h); padding and
// truncation (the caller's, so they can be counted); the fast (Rust) tokenizer's behaviour, which differs
// (no dummy prefix after special tokens, see tests/data/tiny-llava/README.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::dll {
class shared_library;
}

namespace mmr {

class SentencePieceModel;

// Where libmmr_sentencepiece.so is looked for, in order:
//   1. $MMR_SENTENCEPIECE_MODULE (a file; when set it must exist: an explicit choice never falls back);
//   2. beside the binary or library that contains this code (boost::dll::this_line_location()), then its
//      ../lib and ../../lib (bin/runner -> lib/, tests/test_x -> lib/, plugins/<kind>/libx.so -> lib/);
//   3. the absolute path of the module in the build tree this code was compiled in.
std::vector<std::string> sentencepiece_module_candidates();

// Immutable after load(); the const methods may be called from several threads (SentencePiece's encode and
// decode are const).
class Tokenizer {
 public:
  // `model_dir_or_file`: a checkpoint folder holding tokenizer.model (and optionally tokenizer_config.json,
  // config.json), or the tokenizer.model file itself (its folder is then read for the configs).
  // Throws PluginError when the module cannot be found or loaded (naming every path tried and dlerror's
  // reason), DataError when tokenizer.model is missing or corrupt or a config is unreadable (naming the file).
  static std::shared_ptr<Tokenizer> load(const std::string& model_dir_or_file);
  // The same with an explicit module search list instead of sentencepiece_module_candidates().
  static std::shared_ptr<Tokenizer> load(const std::string& model_dir_or_file,
                                         const std::vector<std::string>& module_candidates);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // What `tokenizer(text).input_ids` gave in LLaVA's training: BOS first (when add_bos), the text split
  // around the special pieces <s>, </s>, <unk> (each becomes its id), every other segment encoded on its own
  // by SentencePiece, so each gets the dummy prefix ("</s>USER" -> </s>, "▁USER").
  std::vector<int64_t> encode(std::string_view text, bool add_bos) const;
  // Plain SentencePiece: no BOS, no special-token splitting ("</s>" is ordinary text here).
  std::vector<int64_t> encode_sentencepiece(std::string_view text) const;
  std::vector<std::string> encode_pieces(std::string_view text) const;

  // SentencePiece's decode (BOS/EOS decode to ""). An id outside [0, vocab_size()) (the -200 image placeholder,
  // ids of added tokens such as <image>/<pad>, padded embedding rows) throws DataError; pass `skipped` to
  // drop them instead and get their count.
  std::string decode(const std::vector<int64_t>& ids, std::size_t* skipped = nullptr) const;

  int64_t piece_to_id(std::string_view piece) const;  // unk_id() when the piece is not in the vocabulary
  std::string id_to_piece(int64_t id) const;           // throws DataError when out of range

  int64_t vocab_size() const { return vocab_size_; }  // SentencePiece pieces (not the padded embedding rows)
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t unk_id() const { return unk_id_; }
  // The checkpoint's pad id (tokenizer_config/config pad_token_id, else the pad_token's piece, else
  // SentencePiece's pad, else unk, which is what LLaVA's v1 training set: pad_token = unk_token).
  int64_t pad_id() const { return pad_id_; }
  // llava-hf's id for <image> (config image_token_index / tokenizer_config image_token_id); the model expands
  // LLaVA's -200 placeholder into this id. Empty for original LLaVA checkpoints, which have none.
  std::optional<int64_t> image_token_id() const { return image_token_id_; }

  const std::string& model_file() const { return model_file_; }
  const std::string& module_file() const { return module_file_; }

 private:
  Tokenizer() = default;
  void sp_encode_append(std::string_view text, std::vector<int64_t>* out) const;

  // Declaration order matters: model_ is destroyed before library_, so its code is still mapped.
  std::shared_ptr<boost::dll::shared_library> library_;
  std::unique_ptr<SentencePieceModel> model_;
  std::string model_file_;
  std::string module_file_;
  int64_t vocab_size_ = 0;
  int64_t bos_id_ = -1;
  int64_t eos_id_ = -1;
  int64_t unk_id_ = -1;
  int64_t pad_id_ = -1;
  std::optional<int64_t> image_token_id_;
  std::vector<std::pair<std::string, int64_t>> special_pieces_;  // split on these in encode()
};

}  // namespace mmr
