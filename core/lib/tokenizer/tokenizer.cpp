// The host side of the tokenizer: finds libmmr_sentencepiece.so, loads it deep-bound, reads the checkpoint's
// special ids, and reproduces transformers 4.31's slow LlamaTokenizer (legacy) on top of plain SentencePiece.
//
// Deliberately not here: any SentencePiece header (that is the module's), LLaVA's template and label masking
// (llava_text.cpp).
#include "core/lib/tokenizer/tokenizer.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <map>
#include <mutex>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/api/error.h"
#include "core/lib/tokenizer/sentencepiece_api.h"
#include "core/lib/util/json_safe.h"

#ifndef MMR_SENTENCEPIECE_MODULE_BUILD_PATH
#error "MMR_SENTENCEPIECE_MODULE_BUILD_PATH must be defined by core/lib/tokenizer/CMakeLists.txt"
#endif
#ifndef MMR_SENTENCEPIECE_MODULE_FILE_NAME
#define MMR_SENTENCEPIECE_MODULE_FILE_NAME "libmmr_sentencepiece.so"
#endif

namespace mmr {
namespace {

namespace fs = std::filesystem;

constexpr const char* kModuleEnv = "MMR_SENTENCEPIECE_MODULE";

std::shared_ptr<spdlog::logger> logger() {
  auto log = spdlog::get("tokenizer");
  return log ? log : spdlog::default_logger();
}

// A JSON config beside tokenizer.model; absent files are fine (original LLaVA checkpoints lack some).
nlohmann::json read_json_if_present(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return nlohmann::json::object();
  std::ifstream in(file);
  if (!in) throw DataError(fmt::format("{}: cannot open for reading", file.string()));
  try {
    nlohmann::json j = parse_json_limited(in);
    if (!j.is_object()) {
      throw DataError(fmt::format("{}: expected a JSON object at the top level, found {}", file.string(),
                                  j.type_name()));
    }
    return j;
  } catch (const nlohmann::json::exception& e) {
    throw DataError(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  } catch (const JsonTooDeep& e) {
    throw DataError(fmt::format("{}: {}", file.string(), e.what()));
  }
}

// An integer-valued key, if present and not null.
std::optional<int64_t> int_key(const nlohmann::json& j, const char* key, const fs::path& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) {
    throw DataError(fmt::format("{}: key '{}' must be an integer, found {}", file.string(), key, it->dump()));
  }
  return it->get<int64_t>();
}

// A token given as a string or as {"content": "..."} (transformers' serialised AddedToken).
std::optional<std::string> token_key(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

std::string join_tried(const std::vector<std::string>& tried) {
  std::string out;
  for (const auto& t : tried) out += "\n  " + t;
  return out;
}

struct LoadedModule {
  std::shared_ptr<boost::dll::shared_library> library;
  std::string path;
};

// Loads the first candidate that exists. A file that exists but fails to load is an error right away: we
// never quietly skip a broken module in favour of another one.
LoadedModule load_module(const std::vector<std::string>& candidates) {
  // A deep-bound library is loaded once per process and never unloaded: unloading and re-loading deep-bound code
  // that carries its own copies of libstdc++ template code proved fragile (a crash on the GPU toolchain).
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<boost::dll::shared_library>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& candidate : candidates)
    if (auto it = loaded.find(candidate); it != loaded.end()) return {it->second, candidate};
  std::vector<std::string> tried;
  for (const auto& candidate : candidates) {
    std::error_code ec;
    if (!fs::is_regular_file(candidate, ec)) {
      tried.push_back(candidate + " (no such file)");
      continue;
    }
    auto library = std::make_shared<boost::dll::shared_library>();
    try {
      // RTLD_DEEPBIND: the module resolves protobuf against its own libsentencepiece, never libtorch's
      // libprotobuf (DESIGN §5). RTLD_LOCAL keeps its symbols out of everyone else's lookups.
      library->load(boost::dll::fs::path(candidate), boost::dll::load_mode::rtld_now |
                                                         boost::dll::load_mode::rtld_local |
                                                         boost::dll::load_mode::rtld_deepbind);
    } catch (const std::exception& e) {  // boost's message carries dlerror()'s reason
      throw PluginError(fmt::format("cannot load the SentencePiece module {}: {}{}", candidate, e.what(),
                                    tried.empty() ? "" : "\npaths tried before it:" + join_tried(tried)));
    }
    if (!library->has(kSentencePieceFactorySymbol)) {
      throw PluginError(fmt::format("{} is not a SentencePiece module: it does not export '{}'", candidate,
                                    kSentencePieceFactorySymbol));
    }
    loaded.emplace(candidate, library);
    return {library, candidate};
  }
  throw PluginError(fmt::format(
      "the SentencePiece module {} was not found; paths tried:{}\nhint: build the target mmr_sentencepiece, "
      "or set {} to the module's path",
      MMR_SENTENCEPIECE_MODULE_FILE_NAME, join_tried(tried), kModuleEnv));
}

}  // namespace

std::vector<std::string> sentencepiece_module_candidates() {
  if (const char* env = std::getenv(kModuleEnv); env != nullptr && *env != '\0') {
    return {env};  // an explicit choice: the only candidate, so a typo is an error, not a silent fallback
  }
  std::vector<std::string> out;
  auto add = [&out](const fs::path& p) {
    const std::string s = p.lexically_normal().string();
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  };
  // this_line_location() is the library or executable holding this code. For the main executable dladdr()
  // reports the name it was started by (possibly relative, e.g. "./tests/x"), so use /proc/self/exe there.
  boost::dll::fs::error_code ec;
  boost::dll::fs::path here = boost::dll::this_line_location(ec);
  if (!ec && !here.is_absolute()) here = boost::dll::program_location(ec);
  if (!ec && !here.empty()) {
    const fs::path dir = fs::path(here.string()).parent_path();
    add(dir / MMR_SENTENCEPIECE_MODULE_FILE_NAME);
    add(dir / ".." / "lib" / MMR_SENTENCEPIECE_MODULE_FILE_NAME);
    add(dir / ".." / ".." / "lib" / MMR_SENTENCEPIECE_MODULE_FILE_NAME);
  }
  // Installed (cmake --install, the .deb): <prefix>/bin/runner and <prefix>/lib/mmrunner/.
  if (const boost::dll::fs::path exe = boost::dll::program_location(ec); !ec && !exe.empty())
    add(fs::path(exe.string()).parent_path() / ".." / "lib" / "mmrunner" / MMR_SENTENCEPIECE_MODULE_FILE_NAME);
  add(MMR_SENTENCEPIECE_MODULE_BUILD_PATH);
  return out;
}

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir_or_file) {
  return load(model_dir_or_file, sentencepiece_module_candidates());
}

std::shared_ptr<Tokenizer> Tokenizer::load(const std::string& model_dir_or_file,
                                           const std::vector<std::string>& module_candidates) {
  // Resolve the files first: a wrong checkpoint path is the more likely user error.
  std::error_code ec;
  const fs::path given(model_dir_or_file);
  const bool is_dir = fs::is_directory(given, ec);
  const fs::path model_file = is_dir ? given / "tokenizer.model" : given;
  const fs::path dir = is_dir ? given : given.parent_path();
  if (!fs::is_regular_file(model_file, ec)) {
    throw DataError(fmt::format(
        "{}: SentencePiece model not found{}", model_file.string(),
        is_dir ? " (LLaVA-1.5 and llava-hf checkpoints ship tokenizer.model next to config.json)" : ""));
  }

  LoadedModule module = load_module(module_candidates);
  auto factory = module.library->get<SentencePieceFactory>(kSentencePieceFactorySymbol);

  std::shared_ptr<Tokenizer> tok(new Tokenizer());
  tok->library_ = module.library;
  tok->module_file_ = module.path;
  tok->model_file_ = model_file.string();

  int module_version = -1;
  tok->model_.reset(factory(kSentencePieceApiVersion, &module_version));
  if (!tok->model_) {
    throw PluginError(fmt::format("{}: SentencePiece module API version {} but this build expects {}; rebuild "
                                  "mmr_sentencepiece together with the runner",
                                  module.path, module_version, kSentencePieceApiVersion));
  }
  std::string error;
  if (!tok->model_->load(tok->model_file_, &error)) {
    throw DataError(fmt::format("{}: not a valid SentencePiece model: {}", tok->model_file_, error));
  }

  SentencePieceModel& sp = *tok->model_;
  tok->vocab_size_ = sp.vocab_size();
  tok->bos_id_ = sp.bos_id();
  tok->eos_id_ = sp.eos_id();
  tok->unk_id_ = sp.unk_id();
  if (tok->vocab_size_ <= 0) throw DataError(fmt::format("{}: the model has no pieces", tok->model_file_));

  // The slow tokenizer never splits inside its special tokens: <s>, </s> and <unk> (LLaVA's pad is <unk>).
  for (int64_t id : {tok->bos_id_, tok->eos_id_, tok->unk_id_}) {
    if (id < 0) continue;
    std::string piece = sp.id_to_piece(static_cast<int>(id));
    if (!piece.empty()) tok->special_pieces_.emplace_back(std::move(piece), id);
  }

  const fs::path tokenizer_config_file = dir / "tokenizer_config.json";
  const fs::path config_file = dir / "config.json";
  const nlohmann::json tokenizer_config = read_json_if_present(tokenizer_config_file);
  const nlohmann::json config = read_json_if_present(config_file);

  // pad: the configs' explicit id, else the pad token's piece, else SentencePiece's pad, else unk (LLaVA v1
  // training: `tokenizer.pad_token = tokenizer.unk_token`).
  std::optional<int64_t> pad = int_key(tokenizer_config, "pad_token_id", tokenizer_config_file);
  if (!pad) pad = int_key(config, "pad_token_id", config_file);
  if (!pad && config.contains("text_config") && config["text_config"].is_object()) {
    pad = int_key(config["text_config"], "pad_token_id", config_file);
  }
  if (!pad) {
    if (auto piece = token_key(tokenizer_config, "pad_token")) {
      const int id = sp.piece_to_id(*piece);
      if (id != sp.unk_id() || *piece == sp.id_to_piece(sp.unk_id())) pad = id;
    }
  }
  if (!pad && sp.pad_id() >= 0) pad = sp.pad_id();
  tok->pad_id_ = pad ? *pad : tok->unk_id_;

  tok->image_token_id_ = int_key(config, "image_token_index", config_file);
  if (!tok->image_token_id_) tok->image_token_id_ = int_key(tokenizer_config, "image_token_id", tokenizer_config_file);

  // LLaVA-1.5 trained with transformers 4.31 where this tokenizer behaved as `legacy`; some checkpoints say
  // legacy=false for newer transformers. We always reproduce the training-time behaviour, and say so.
  if (auto it = tokenizer_config.find("legacy"); it != tokenizer_config.end() && it->is_boolean() && !it->get<bool>()) {
    logger()->info("{}: legacy=false ignored; encoding as LLaVA-1.5 trained (transformers 4.31, legacy)",
                   tokenizer_config_file.string());
  }
  logger()->debug("tokenizer {} via {}: {} pieces, bos {} eos {} unk {} pad {}", tok->model_file_,
                  tok->module_file_, tok->vocab_size_, tok->bos_id_, tok->eos_id_, tok->unk_id_, tok->pad_id_);
  return tok;
}

Tokenizer::~Tokenizer() = default;

void Tokenizer::sp_encode_append(std::string_view text, std::vector<int64_t>* out) const {
  std::vector<int> ids;
  std::string error;
  if (!model_->encode_ids(text, &ids, &error)) {
    throw DataError(fmt::format("{}: SentencePiece could not encode the text ({} bytes): {}", model_file_,
                                text.size(), error));
  }
  out->insert(out->end(), ids.begin(), ids.end());
}

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int64_t> out;
  if (add_bos) {
    if (bos_id_ < 0) throw DataError(fmt::format("{}: BOS requested but the model has no BOS piece", model_file_));
    out.push_back(bos_id_);
  }
  // transformers' tokens_trie.split: the earliest special piece wins, the longest on a tie. The text between
  // specials goes to SentencePiece segment by segment; empty segments are skipped ("if not token: continue").
  // Whitespace next to a special is kept: LlamaTokenizer registers <s>, </s>, <unk> as
  // AddedToken(lstrip=False, rstrip=False), and PreTrainedTokenizer.tokenize only strips around specials
  // that are not AddedTokens.
  std::size_t segment_start = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t best_at = std::string_view::npos;
    const std::pair<std::string, int64_t>* best = nullptr;
    for (const auto& special : special_pieces_) {
      const std::size_t at = text.find(special.first, pos);
      if (at == std::string_view::npos) continue;
      if (at < best_at || (at == best_at && special.first.size() > best->first.size())) {
        best_at = at;
        best = &special;
      }
    }
    if (best == nullptr) break;
    if (best_at > segment_start) sp_encode_append(text.substr(segment_start, best_at - segment_start), &out);
    out.push_back(best->second);
    pos = best_at + best->first.size();
    segment_start = pos;
  }
  if (segment_start < text.size()) sp_encode_append(text.substr(segment_start), &out);
  return out;
}

std::vector<int64_t> Tokenizer::encode_sentencepiece(std::string_view text) const {
  std::vector<int64_t> out;
  sp_encode_append(text, &out);
  return out;
}

std::vector<std::string> Tokenizer::encode_pieces(std::string_view text) const {
  std::vector<std::string> pieces;
  std::string error;
  if (!model_->encode_pieces(text, &pieces, &error)) {
    throw DataError(fmt::format("{}: SentencePiece could not encode the text ({} bytes): {}", model_file_,
                                text.size(), error));
  }
  return pieces;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, std::size_t* skipped) const {
  std::vector<int> sp_ids;
  sp_ids.reserve(ids.size());
  if (skipped) *skipped = 0;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    if (id >= 0 && id < vocab_size_) {
      sp_ids.push_back(static_cast<int>(id));
    } else if (skipped) {
      ++*skipped;
    } else {
      throw DataError(fmt::format(
          "{}: cannot decode id {} at position {}: SentencePiece has ids 0..{} (the image placeholder -200 and "
          "added tokens such as <image>/<pad> are not text; pass `skipped` to drop them)",
          model_file_, id, i, vocab_size_ - 1));
    }
  }
  std::string text;
  std::string error;
  if (!model_->decode_ids(sp_ids, &text, &error)) {
    throw DataError(fmt::format("{}: SentencePiece could not decode {} ids: {}", model_file_, sp_ids.size(), error));
  }
  return text;
}

int64_t Tokenizer::piece_to_id(std::string_view piece) const { return model_->piece_to_id(piece); }

std::string Tokenizer::id_to_piece(int64_t id) const {
  if (id < 0 || id >= vocab_size_) {
    throw DataError(fmt::format("{}: id {} is outside the vocabulary (0..{})", model_file_, id, vocab_size_ - 1));
  }
  return model_->id_to_piece(static_cast<int>(id));
}

}  // namespace mmr
