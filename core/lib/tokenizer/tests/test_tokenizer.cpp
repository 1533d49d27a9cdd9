// Tests for core/tokenizer: parity with the HF/LLaVA reference fixture, LLaVA's text rules, and the errors.
//
// The reference directory is $LLAVA_REFERENCE_DIR when set (any directory laid out like tests/data/tiny-llava:
// model/tokenizer.model + configs, expected/*.jsonl), else tests/data/tiny-llava. Nothing here knows this
// fixture's ids or rows: every expectation is read from the reference files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/api/error.h"
#include "core/lib/tokenizer/llava_text.h"
#include "core/lib/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using mmr::Tokenizer;
using mmr::llava::Turn;

namespace {

fs::path reference_dir() {
  if (const char* env = std::getenv("LLAVA_REFERENCE_DIR"); env != nullptr && *env != '\0') return env;
  return fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
}

fs::path model_dir() { return reference_dir() / "model"; }

std::vector<json> read_jsonl(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot open reference file " + file.string());
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    rows.push_back(json::parse(line));
  }
  return rows;
}

json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return json::object();
  return json::parse(in);
}

bool row_has_image(const json& row) { return row.contains("image") && !row["image"].is_null(); }

const std::shared_ptr<Tokenizer>& shared_tokenizer() {
  static const std::shared_ptr<Tokenizer> tok = Tokenizer::load(model_dir().string());
  return tok;
}

// A fresh temporary directory per test, removed at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("mmr_tokenizer_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& file, const std::string& content) {
  std::ofstream out(file, std::ios::binary);
  out << content;
}

std::vector<int64_t> concat(std::initializer_list<std::vector<int64_t>> parts) {
  std::vector<int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

// ---- parity with the reference fixture -------------------------------------------------------------------

TEST(TokenizerParity, SentencePieceEncodeAndDecodeMatchReference) {
  const auto& tok = *shared_tokenizer();
  const auto rows = read_jsonl(reference_dir() / "expected" / "sp_encode.jsonl");
  ASSERT_FALSE(rows.empty());
  for (const json& row : rows) {
    const std::string text = row["text"].get<std::string>();
    SCOPED_TRACE("text: " + text);
    const auto expected_ids = row["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(tok.encode_sentencepiece(text), expected_ids);
    EXPECT_EQ(tok.decode(expected_ids), row["decoded"].get<std::string>());
  }
}

TEST(TokenizerParity, LlavaConversationsMatchReference) {
  const auto& tok = *shared_tokenizer();
  const auto rows = read_jsonl(reference_dir() / "expected" / "tokenization.jsonl");
  ASSERT_FALSE(rows.empty());
  for (const json& row : rows) {
    SCOPED_TRACE("row " + row.value("id", std::string("?")));
    const auto turns = mmr::llava::parse_turns(row["messages"]);
    const auto enc = mmr::llava::encode_conversation_v1(tok, turns, row_has_image(row));
    EXPECT_EQ(enc.prompt, row["prompt"].get<std::string>());
    EXPECT_EQ(enc.input_ids, row["input_ids"].get<std::vector<int64_t>>());
    EXPECT_EQ(enc.labels, row["labels"].get<std::vector<int64_t>>());
    EXPECT_EQ(enc.mismatch, row["mismatch"].get<bool>()) << enc.mismatch_detail;
    const auto expected_ids = row["input_ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(enc.num_images,
              std::count(expected_ids.begin(), expected_ids.end(), mmr::llava::kImagePlaceholderId));
  }
}

// Every reference row is a finished conversation: BOS first, the last reply's </s> last.
TEST(TokenizerParity, SpecialIdsAgreeWithReferenceRowsAndConfigs) {
  const auto& tok = *shared_tokenizer();
  for (const json& row : read_jsonl(reference_dir() / "expected" / "tokenization.jsonl")) {
    const auto ids = row["input_ids"].get<std::vector<int64_t>>();
    ASSERT_GE(ids.size(), 2u);
    EXPECT_EQ(ids.front(), tok.bos_id());
    EXPECT_EQ(ids.back(), tok.eos_id());
  }
  const json config = read_json(model_dir() / "config.json");
  const json tokenizer_config = read_json(model_dir() / "tokenizer_config.json");
  if (tokenizer_config.contains("pad_token_id")) {
    EXPECT_EQ(tok.pad_id(), tokenizer_config["pad_token_id"].get<int64_t>());
  } else if (config.contains("pad_token_id") && !config["pad_token_id"].is_null()) {
    EXPECT_EQ(tok.pad_id(), config["pad_token_id"].get<int64_t>());
  }
  if (config.contains("image_token_index")) {
    ASSERT_TRUE(tok.image_token_id().has_value());
    EXPECT_EQ(*tok.image_token_id(), config["image_token_index"].get<int64_t>());
  }
}

TEST(TokenizerParity, GenerationPromptsMatchReference) {
  const fs::path file = reference_dir() / "expected" / "generate.jsonl";
  if (!fs::exists(file)) GTEST_SKIP() << "no " << file;
  const auto& tok = *shared_tokenizer();
  std::map<std::string, json> conversations;
  for (const json& row : read_jsonl(reference_dir() / "expected" / "tokenization.jsonl")) {
    conversations[row["id"].get<std::string>()] = row;
  }
  int compared = 0;
  for (const json& row : read_jsonl(file)) {
    const std::string id = row["id"].get<std::string>();
    SCOPED_TRACE("generate row " + id);
    // The conversation is the row's own "messages" when it has them, else the tokenization row of that id.
    json messages;
    if (row.contains("messages")) {
      messages = row["messages"];
    } else {
      auto it = conversations.find(id);
      ASSERT_NE(it, conversations.end()) << "generate.jsonl row without messages or a tokenization.jsonl row";
      messages = it->second["messages"];
    }
    const auto turns = mmr::llava::parse_turns(messages);
    const auto enc = mmr::llava::encode_generation_prompt_v1(tok, turns, row_has_image(row));
    EXPECT_EQ(enc.prompt, row["prompt"].get<std::string>());
    EXPECT_EQ(enc.input_ids, row["input_ids"].get<std::vector<int64_t>>());
    ++compared;
  }
  EXPECT_GT(compared, 0);
}

TEST(TokenizerParity, PreferencePairsMatchReference) {
  const fs::path file = reference_dir() / "expected" / "preference_logps.jsonl";
  if (!fs::exists(file)) GTEST_SKIP() << "no " << file;
  const auto& tok = *shared_tokenizer();
  int compared = 0;
  for (const json& row : read_jsonl(file)) {
    SCOPED_TRACE("pair " + row.value("id", std::string("?")));
    for (const char* side : {"win", "rej"}) {
      const std::string ids_key = std::string(side) + "_input_ids";
      const std::string labels_key = std::string(side) + "_labels";
      const char* answer_key = std::string(side) == "win" ? "chosen" : "rejected";
      if (!row.contains(ids_key) || !row.contains(answer_key)) continue;
      const json& answer = row[answer_key];
      const auto turns = mmr::llava::parse_turns(json::array({row["question"], answer}));
      const auto enc = mmr::llava::encode_conversation_v1(tok, turns, row_has_image(row));
      EXPECT_EQ(enc.input_ids, row[ids_key].get<std::vector<int64_t>>()) << side;
      EXPECT_EQ(enc.labels, row[labels_key].get<std::vector<int64_t>>()) << side;
      ++compared;
    }
  }
  EXPECT_GT(compared, 0);
}

// ---- the legacy slow tokenizer -----------------------------------------------------------------------------

TEST(Tokenizer, SplitsAroundSpecialTokensAndEncodesEachSegmentWithDummyPrefix) {
  const auto& tok = *shared_tokenizer();
  const std::string eos = tok.id_to_piece(tok.eos_id());
  // "</s>USER" -> </s>, then "USER" encoded on its own (so with the dummy prefix).
  EXPECT_EQ(tok.encode("a." + eos + "USER: hi", true),
            concat({{tok.bos_id()}, tok.encode_sentencepiece("a."), {tok.eos_id()},
                    tok.encode_sentencepiece("USER: hi")}));
  // Whitespace beside a special is kept (LlamaTokenizer's AddedToken(lstrip=False, rstrip=False)).
  EXPECT_EQ(tok.encode("x " + eos + " y", false),
            concat({tok.encode_sentencepiece("x "), {tok.eos_id()}, tok.encode_sentencepiece(" y")}));
  // Adjacent specials and nothing else: no empty segment is encoded.
  EXPECT_EQ(tok.encode(eos + eos, true), (std::vector<int64_t>{tok.bos_id(), tok.eos_id(), tok.eos_id()}));
  EXPECT_EQ(tok.encode("", true), std::vector<int64_t>{tok.bos_id()});
  // Plain SentencePiece treats the same characters as text.
  const auto plain = tok.encode_sentencepiece(eos);
  EXPECT_TRUE(plain.size() != 1 || plain[0] != tok.eos_id());
}

TEST(Tokenizer, DecodeRejectsIdsOutsideTheVocabularyUnlessAskedToSkip) {
  const auto& tok = *shared_tokenizer();
  const auto ids = tok.encode_sentencepiece("hello world");
  std::vector<int64_t> with_extras = ids;
  with_extras.insert(with_extras.begin() + 1, mmr::llava::kImagePlaceholderId);
  with_extras.push_back(tok.vocab_size());
  EXPECT_THROW(tok.decode(with_extras), mmr::DataError);
  std::size_t skipped = 0;
  EXPECT_EQ(tok.decode(with_extras, &skipped), tok.decode(ids));
  EXPECT_EQ(skipped, 2u);
  EXPECT_THROW(tok.id_to_piece(-1), mmr::DataError);
  EXPECT_EQ(tok.piece_to_id(tok.id_to_piece(tok.eos_id())), tok.eos_id());
}

// ---- LLaVA's text rules ------------------------------------------------------------------------------------

TEST(LlavaTokenization, MoveImageToFrontFollowsPreprocessMultimodal) {
  using mmr::llava::move_image_to_front;
  auto out = move_image_to_front({{"human", "Describe <image> this  "}, {"gpt", "ok"}});
  EXPECT_EQ(out[0].text, "<image>\nDescribe  this");
  EXPECT_EQ(out[1].text, "ok");
  // Python's str.strip knows Unicode spaces (U+3000, U+00A0); "<image>\n" + "" is stripped to "<image>".
  EXPECT_EQ(move_image_to_front({{"human", "\u3000<image>question\u00a0"}})[0].text, "<image>\nquestion");
  EXPECT_EQ(move_image_to_front({{"human", " <image> "}})[0].text, "<image>");
  EXPECT_EQ(move_image_to_front({{"human", "<image>\nq"}})[0].text, "<image>\nq");
}

TEST(LlavaTokenization, PythonStripLeavesNonSpaceUnicodeAlone) {
  EXPECT_EQ(mmr::llava::python_strip(" \t\n图片 \u2003"), "图片");
  EXPECT_EQ(mmr::llava::python_strip("\u200b x"), "\u200b x");  // zero-width space is not isspace()
  EXPECT_EQ(mmr::llava::python_strip(""), "");
}

TEST(LlavaTokenization, VicunaPromptForTrainingAndForGeneration) {
  const std::string sys(mmr::llava::kVicunaV1System);
  const std::vector<Turn> turns = {{"human", "q1"}, {"gpt", "a1"}, {"human", "q2"}, {"gpt", "a2"}};
  EXPECT_EQ(mmr::llava::vicuna_v1_prompt(turns, false),
            sys + " USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>");
  EXPECT_EQ(mmr::llava::vicuna_v1_prompt(turns, true), sys + " USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT:");
  EXPECT_EQ(mmr::llava::vicuna_v1_prompt({{"USER", "q"}}, true), sys + " USER: q ASSISTANT:");
  EXPECT_THROW(mmr::llava::vicuna_v1_prompt({{"human", "q"}, {"human", "q"}}, false), mmr::DataError);
  EXPECT_THROW(mmr::llava::vicuna_v1_prompt({{"narrator", "q"}}, false), mmr::DataError);
}

TEST(LlavaTokenization, TokenizerImageTokenGivesOnePlaceholderPerImageAndOneBos) {
  const auto& tok = *shared_tokenizer();
  const auto ids = mmr::llava::tokenizer_image_token(tok, "A <image> B<image>");
  EXPECT_EQ(ids, concat({{tok.bos_id()}, tok.encode_sentencepiece("A "), {mmr::llava::kImagePlaceholderId},
                         tok.encode_sentencepiece(" B"), {mmr::llava::kImagePlaceholderId}}));
  EXPECT_EQ(mmr::llava::tokenizer_image_token(tok, "no image here"), tok.encode("no image here", true));
}

TEST(LlavaTokenization, TextOnlyRowKeepsALiteralImageTagAsText) {
  const auto& tok = *shared_tokenizer();
  const auto enc = mmr::llava::encode_conversation_v1(tok, {{"human", "<image>\nq"}, {"gpt", "a"}}, false);
  EXPECT_EQ(enc.num_images, 0);
  EXPECT_FALSE(enc.mismatch) << enc.mismatch_detail;
}

TEST(LlavaTokenization, LabelsCoverOnlyAssistantRepliesAndTheirEos) {
  const auto& tok = *shared_tokenizer();
  const std::vector<Turn> turns = {{"human", "<image>\nq1"}, {"gpt", "first reply"}, {"human", "q2"},
                                   {"gpt", "second"}};
  const auto enc = mmr::llava::encode_conversation_v1(tok, turns, true);
  ASSERT_FALSE(enc.mismatch) << enc.mismatch_detail;
  std::vector<int64_t> kept;
  for (std::size_t i = 0; i < enc.labels.size(); ++i) {
    if (enc.labels[i] == mmr::llava::kIgnoreIndex) continue;
    EXPECT_EQ(enc.labels[i], enc.input_ids[i]);
    kept.push_back(enc.labels[i]);
  }
  // The space after "ASSISTANT:" becomes the reply's word-initial "▁", as the dummy prefix would give it.
  EXPECT_EQ(kept, concat({tok.encode_sentencepiece("first reply"), {tok.eos_id()},
                          tok.encode_sentencepiece("second"), {tok.eos_id()}}));
}

TEST(LlavaTokenization, MismatchMasksTheWholeRowAndIsReported) {
  const auto& tok = *shared_tokenizer();
  // A reply containing sep2 splits into an extra "round" with no " ASSISTANT: ": LLaVA stops counting there,
  // its lengths disagree, and it masks the whole row ("WARNING: tokenization mismatch ... (ignored)").
  const auto enc = mmr::llava::encode_conversation_v1(tok, {{"human", "q"}, {"gpt", "a</s>b"}}, false);
  EXPECT_TRUE(enc.mismatch);
  EXPECT_NE(enc.mismatch_detail.find("tokenization mismatch"), std::string::npos);
  ASSERT_FALSE(enc.labels.empty());
  for (int64_t label : enc.labels) EXPECT_EQ(label, mmr::llava::kIgnoreIndex);
  EXPECT_EQ(enc.input_ids.size(), enc.labels.size());
}

TEST(LlavaTokenization, LeadingGptTurnIsDroppedLikeLlava) {
  const auto& tok = *shared_tokenizer();
  const auto with = mmr::llava::encode_conversation_v1(tok, {{"gpt", "hi"}, {"human", "q"}, {"gpt", "a"}}, false);
  const auto without = mmr::llava::encode_conversation_v1(tok, {{"human", "q"}, {"gpt", "a"}}, false);
  EXPECT_EQ(with.input_ids, without.input_ids);
  EXPECT_EQ(with.labels, without.labels);
}

TEST(LlavaTokenization, ParseTurnsAcceptsLlavaAndPairFormsAndNamesBadTurns) {
  const auto a = mmr::llava::parse_turns(json::parse(R"([{"from":"human","value":"q"},{"from":"gpt","value":"a"}])"));
  const auto b = mmr::llava::parse_turns(json::parse(R"([["USER","q"],["ASSISTANT","a"]])"));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(mmr::llava::vicuna_v1_prompt(a, false), mmr::llava::vicuna_v1_prompt(b, false));
  try {
    mmr::llava::parse_turns(json::parse(R"([{"from":"human","value":"q"},{"from":"gpt"}])"));
    FAIL() << "expected DataError";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("turn 1"), std::string::npos) << e.what();
  }
}

// ---- loading and errors ------------------------------------------------------------------------------------

TEST(TokenizerLoad, AcceptsTheCheckpointFolderOrTheModelFile) {
  const auto from_file = Tokenizer::load((model_dir() / "tokenizer.model").string());
  EXPECT_EQ(from_file->vocab_size(), shared_tokenizer()->vocab_size());
  EXPECT_EQ(from_file->pad_id(), shared_tokenizer()->pad_id());
  EXPECT_TRUE(fs::exists(from_file->module_file())) << from_file->module_file();
}

TEST(TokenizerLoad, KeepsTheModuleMappedWhileATokenizerLives) {
  auto first = Tokenizer::load(model_dir().string());
  auto second = Tokenizer::load(model_dir().string());
  const auto expected = first->encode("still mapped", true);
  first.reset();
  EXPECT_EQ(second->encode("still mapped", true), expected);
}

TEST(TokenizerLoad, MissingTokenizerModelIsDataErrorNamingTheFile) {
  TempDir dir;
  try {
    Tokenizer::load(dir.path.string());
    FAIL() << "expected DataError";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find((dir.path / "tokenizer.model").string()), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, CorruptTokenizerModelIsDataErrorNamingTheFile) {
  TempDir dir;
  for (const std::string& content : {std::string("this is not a sentencepiece model\n"), std::string()}) {
    write_file(dir.path / "tokenizer.model", content);
    try {
      Tokenizer::load(dir.path.string());
      FAIL() << "expected DataError for content '" << content << "'";
    } catch (const mmr::DataError& e) {
      EXPECT_NE(std::string(e.what()).find((dir.path / "tokenizer.model").string()), std::string::npos)
          << e.what();
    }
  }
}

TEST(TokenizerLoad, MissingModuleIsPluginErrorNamingEveryPathTried) {
  const std::vector<std::string> candidates = {"/nonexistent/a/libmmr_sentencepiece.so",
                                               "/nonexistent/b/libmmr_sentencepiece.so"};
  try {
    Tokenizer::load(model_dir().string(), candidates);
    FAIL() << "expected PluginError";
  } catch (const mmr::PluginError& e) {
    for (const auto& c : candidates) EXPECT_NE(std::string(e.what()).find(c), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, UnloadableModuleIsPluginErrorWithDlerrorReason) {
  TempDir dir;
  const fs::path fake = dir.path / "libmmr_sentencepiece.so";
  write_file(fake, "not an ELF file");
  try {
    Tokenizer::load(model_dir().string(), {fake.string()});
    FAIL() << "expected PluginError";
  } catch (const mmr::PluginError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(fake.string()), std::string::npos) << what;
    EXPECT_NE(what.find("dlerror"), std::string::npos) << what;
  }
}

TEST(TokenizerLoad, EnvironmentOverrideIsTheOnlyCandidate) {
  const char* old = std::getenv("MMR_SENTENCEPIECE_MODULE");
  const std::string saved = old ? old : "";
  ::setenv("MMR_SENTENCEPIECE_MODULE", "/nonexistent/override/libmmr_sentencepiece.so", 1);
  EXPECT_EQ(mmr::sentencepiece_module_candidates(),
            std::vector<std::string>{"/nonexistent/override/libmmr_sentencepiece.so"});
  try {
    Tokenizer::load(model_dir().string());
    ADD_FAILURE() << "expected PluginError";
  } catch (const mmr::PluginError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/override/"), std::string::npos) << e.what();
  }
  if (old) {
    ::setenv("MMR_SENTENCEPIECE_MODULE", saved.c_str(), 1);
  } else {
    ::unsetenv("MMR_SENTENCEPIECE_MODULE");
  }
}

TEST(TokenizerLoad, DefaultSearchFindsTheBuiltModuleBesideTheBinary) {
  if (std::getenv("MMR_SENTENCEPIECE_MODULE")) GTEST_SKIP() << "MMR_SENTENCEPIECE_MODULE is set";
  const auto candidates = mmr::sentencepiece_module_candidates();
  ASSERT_GE(candidates.size(), 2u);
  // tests/test_tokenizer -> ../lib/libmmr_sentencepiece.so is the second candidate and exists in the build.
  EXPECT_TRUE(fs::exists(candidates[1])) << candidates[1];
  EXPECT_EQ(fs::canonical(shared_tokenizer()->module_file()), fs::canonical(candidates[1]));
}
