// The boundary between the torch-free tokenizer (mmr_tokenizer) and the module that links SentencePiece
// (libmmr_sentencepiece.so).
//
// Why a boundary at all: Debian's libsentencepiece embeds protobuf 3.14 symbols and libtorch links protobuf
// 3.21; a process that links both crashes at start-up (DESIGN §5). So only the module links sentencepiece, and
// the host dlopen()s it with RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND, which keeps the module's protobuf to itself.
//
// What crosses the boundary: one extern "C" factory and one abstract class of plain virtual calls taking
// standard-library types (both sides share the process's libstdc++). No exception crosses it: every call that
// can fail returns false and fills *error, so the host can turn it into an mmr error with the file name.
//
// Deliberately not here: any SentencePiece or protobuf header, LLaVA logic (llava_text.h), special-token
// splitting (tokenizer.h). The module is a thin, dumb wrapper.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mmr {

// Bump when SentencePieceModel's methods change in any way; host and module must agree exactly.
constexpr int kSentencePieceApiVersion = 1;

// Name of the factory symbol the module exports.
inline constexpr const char* kSentencePieceFactorySymbol = "mmr_sentencepiece_create";

// One loaded SentencePiece model. Ids are SentencePiece's own (int), not widened.
class SentencePieceModel {
 public:
  virtual ~SentencePieceModel() = default;

  // Loads a serialized ModelProto (tokenizer.model). False with *error = SentencePiece's status message.
  virtual bool load(const std::string& path, std::string* error) = 0;

  // Plain SentencePiece: the normaliser, the dummy prefix and byte fallback as the model says; no BOS/EOS.
  virtual bool encode_ids(std::string_view text, std::vector<int>* ids, std::string* error) const = 0;
  virtual bool encode_pieces(std::string_view text, std::vector<std::string>* pieces,
                             std::string* error) const = 0;
  // SentencePiece's decode: control pieces (<s>, </s>) decode to "", byte pieces are reassembled.
  virtual bool decode_ids(const std::vector<int>& ids, std::string* text, std::string* error) const = 0;

  virtual int piece_to_id(std::string_view piece) const = 0;  // the unk id when the piece is absent
  virtual std::string id_to_piece(int id) const = 0;          // "" when id is out of range
  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;  // -1 when the model has none
  virtual int eos_id() const = 0;
  virtual int unk_id() const = 0;
  virtual int pad_id() const = 0;
};

// The factory: returns a new, unloaded model (the caller deletes it, which runs the module's destructor) or
// nullptr when host_api_version != the module's; *module_api_version always receives the module's version.
using SentencePieceFactory = SentencePieceModel*(int host_api_version, int* module_api_version);

}  // namespace mmr
