// libmmr_sentencepiece.so: the only code in the project that links SentencePiece (and with it Debian's
// embedded protobuf 3.14). Loaded deep-bound by mmr_tokenizer; see sentencepiece_api.h for why.
//
// Deliberately dumb: it forwards to sentencepiece::SentencePieceProcessor and turns statuses into strings.
// No exception leaves this file; no LLaVA or special-token logic lives here.
#include <sentencepiece_processor.h>

#include <exception>
#include <memory>
#include <new>

#include "core/lib/tokenizer/sentencepiece_api.h"

namespace {

// Runs `body`; any exception becomes `false` plus a message, so nothing unwinds across the dlopen boundary.
template <typename F>
bool guarded(std::string* error, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    if (error) *error = std::string("exception in libmmr_sentencepiece: ") + e.what();
  } catch (...) {
    if (error) *error = "unknown exception in libmmr_sentencepiece";
  }
  return false;
}

bool ok_or(const sentencepiece::util::Status& status, std::string* error) {
  if (status.ok()) return true;
  if (error) *error = status.ToString();
  return false;
}

class SentencePieceModelImpl final : public mmr::SentencePieceModel {
 public:
  bool load(const std::string& path, std::string* error) override {
    return guarded(error, [&] { return ok_or(processor_.Load(path), error); });
  }

  bool encode_ids(std::string_view text, std::vector<int>* ids, std::string* error) const override {
    return guarded(error, [&] {
      ids->clear();
      return ok_or(processor_.Encode({text.data(), text.size()}, ids), error);
    });
  }

  bool encode_pieces(std::string_view text, std::vector<std::string>* pieces, std::string* error) const override {
    return guarded(error, [&] {
      pieces->clear();
      return ok_or(processor_.Encode({text.data(), text.size()}, pieces), error);
    });
  }

  bool decode_ids(const std::vector<int>& ids, std::string* text, std::string* error) const override {
    return guarded(error, [&] {
      text->clear();
      return ok_or(processor_.Decode(ids, text), error);
    });
  }

  int piece_to_id(std::string_view piece) const override {
    return processor_.PieceToId({piece.data(), piece.size()});
  }
  std::string id_to_piece(int id) const override {
    if (id < 0 || id >= processor_.GetPieceSize()) return {};
    return processor_.IdToPiece(id);
  }
  int vocab_size() const override { return processor_.GetPieceSize(); }
  int bos_id() const override { return processor_.bos_id(); }
  int eos_id() const override { return processor_.eos_id(); }
  int unk_id() const override { return processor_.unk_id(); }
  int pad_id() const override { return processor_.pad_id(); }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

// The one exported symbol (the target builds with hidden visibility).
extern "C" __attribute__((visibility("default"))) mmr::SentencePieceModel* mmr_sentencepiece_create(
    int host_api_version, int* module_api_version) {
  if (module_api_version) *module_api_version = mmr::kSentencePieceApiVersion;
  if (host_api_version != mmr::kSentencePieceApiVersion) return nullptr;
  return new (std::nothrow) SentencePieceModelImpl();
}
