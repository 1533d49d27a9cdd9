// Row formats on good and bad rows: the fixture's DPO rows, the seed's Python-literal strings, whole conversations,
// TRL's prompt/chosen/rejected, LLaVA conversations, scored candidates; every bad row named by file, row, reason.
#include <gtest/gtest.h>

#include "helpers.h"

using namespace mmr;
using namespace mmr::data;
using namespace mmr::data::test;
using nlohmann::json;

namespace {

class Formats : public TempDir {};

const std::string kWide = (kImages / "wide.png").string();

}  // namespace

// ---- preference ------------------------------------------------------------------------------------------------

TEST_F(Formats, FixturePreferenceRowsLoadWithTheirReferenceLogps) {
  const fs::path file = kFixture / "expected" / "preference_logps.jsonl";
  const LoadResult r = load(RowKind::Preference, file.string(), "image_folder: " + kImages.string());
  ASSERT_EQ(r.rows.preferences.size(), 4u);
  EXPECT_EQ(r.rows_read, 4);
  EXPECT_TRUE(r.bad_rows.empty());
  // Compare with the file as nlohmann reads it, field by field.
  std::ifstream in(file);
  std::string line;
  for (size_t i = 0; std::getline(in, line); ++i) {
    const json want = json::parse(line);
    const PreferenceRow& row = r.rows.preferences[i];
    EXPECT_EQ(row.id, want["id"].get<std::string>());
    EXPECT_EQ(row.origin.row, static_cast<int64_t>(i + 1));
    EXPECT_EQ(row.origin.file, file.string());
    if (want["image"].is_null()) EXPECT_TRUE(row.images.empty());
    else EXPECT_EQ(row.images, std::vector<std::string>{(kImages / want["image"].get<std::string>()).string()});
    ASSERT_EQ(row.prompt.size(), 1u);
    EXPECT_EQ(row.prompt[0].from, "human");
    EXPECT_EQ(row.prompt[0].value, want["question"]["value"].get<std::string>());
    EXPECT_EQ(row.chosen.text, want["chosen"]["value"].get<std::string>());
    EXPECT_EQ(row.rejected.text, want["rejected"]["value"].get<std::string>());
    EXPECT_TRUE(row.chosen.conversation.empty());
    EXPECT_EQ(*row.ref_win_logp, want["ref_win_logp"].get<double>());
    EXPECT_EQ(*row.ref_rej_logp, want["ref_rej_logp"].get<double>());
    EXPECT_EQ(*row.ref_win_avg_logp, want["ref_win_avg_logp"].get<double>());
    EXPECT_EQ(*row.ref_rej_avg_logp, want["ref_rej_avg_logp"].get<double>());
    EXPECT_EQ(row.ref_win_per_token_logp, want["ref_win_per_token_logp"].get<std::vector<double>>());
    EXPECT_EQ(row.ref_rej_per_token_logp, want["ref_rej_per_token_logp"].get<std::vector<double>>());
    EXPECT_EQ(row.extra["win_input_ids"], want["win_input_ids"]);  // unknown fields ride along
    EXPECT_FALSE(row.flipped);
  }
}

TEST_F(Formats, SeedPythonLiteralStringsAndWholeConversations) {
  const std::string file = write("seed.jsonl", R"({"id": "a", "image": ")" + kWide + R"(", "question": "{'from': 'human', 'value': '<image>\\nWhat is it?'}", "chosen": "{'from': 'gpt', 'value': \"it's a cat\"}", "rejected": "{'from': 'gpt', 'value': 'A dog.'}"}
{"id": "b", "chosen": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello."}], "rejected": "[{'from': 'human', 'value': 'Hi?'}, {'from': 'gpt', 'value': 'Go away.'}]"}
)");
  const LoadResult r = load(RowKind::Preference, file);
  ASSERT_EQ(r.rows.preferences.size(), 2u);
  const PreferenceRow& a = r.rows.preferences[0];
  EXPECT_EQ(a.prompt[0].value, "<image>\nWhat is it?");
  EXPECT_EQ(a.chosen.text, "it's a cat");
  EXPECT_EQ(a.rejected.text, "A dog.");
  EXPECT_EQ(a.images, std::vector<std::string>{kWide});
  const PreferenceRow& b = r.rows.preferences[1];
  ASSERT_EQ(b.prompt.size(), 1u);  // taken from the chosen conversation, before its reply
  EXPECT_EQ(b.prompt[0].value, "Hi?");
  EXPECT_EQ(b.chosen.text, "Hello.");
  EXPECT_EQ(b.rejected.text, "Go away.");
  EXPECT_EQ(b.chosen.conversation.size(), 2u);
  EXPECT_EQ(b.rejected.conversation[1].value, "Go away.");
}

TEST_F(Formats, TrlPromptChosenRejectedForms) {
  const std::string file = write("trl.json", R"([
  {"prompt": "What colour is the sky?", "chosen": "Blue.", "rejected": "Green."},
  {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
   "chosen": [{"role": "assistant", "content": "Ellipses."}], "rejected": [{"role": "assistant", "content": "A dog."}],
   "images": [")" + kWide + R"("]},
  {"prompt": "Describe.", "chosen": "Ellipses.", "rejected": "A dog.", "images": [")" + kWide + R"("]}
])");
  const LoadResult r = load(RowKind::Preference, file, "image_token: add");
  ASSERT_EQ(r.rows.preferences.size(), 3u) << (r.bad_rows.empty() ? "" : r.bad_rows[0].text());
  EXPECT_EQ(r.rows.preferences[0].id, "row1");  // no id: the row number stands in
  EXPECT_EQ(r.rows.preferences[0].prompt[0].value, "What colour is the sky?");
  EXPECT_EQ(r.rows.preferences[0].chosen.text, "Blue.");
  EXPECT_EQ(r.rows.preferences[1].prompt[0].value, "<image>\nDescribe.");
  EXPECT_EQ(r.rows.preferences[1].chosen.text, "Ellipses.");
  EXPECT_TRUE(r.rows.preferences[1].chosen.conversation.empty());  // one assistant turn = the reply only
  EXPECT_EQ(r.rows.preferences[2].prompt[0].value, "<image>\nDescribe.");  // image_token: add
  EXPECT_EQ(r.rows.preferences[2].origin.row, 3);  // rows of a JSON array are element indices
}

TEST_F(Formats, BadPreferenceRowsFailWithFileRowAndReason) {
  struct Case {
    std::string row, reason, detail;
  };
  const std::vector<Case> cases = {
      {R"({"question": "q", "rejected": "r"})", "missing_field", "missing field 'chosen'"},
      {R"({"question": "q", "chosen": 3, "rejected": "r"})", "wrong_type", "field 'chosen': expected"},
      {R"({"question": "q", "chosen": "c", "rejected": {"from": "gpt", "value": "  "}})", "empty_response",
       "field 'rejected': the reply is empty"},
      {R"({"image": ")" + kWide + R"(", "question": "no placeholder", "chosen": "c", "rejected": "r"})", "no_image_token",
       "an image is given but the text has no \"<image>\""},
      {R"({"question": "<image>\nq", "chosen": "c", "rejected": "r"})", "image_token_without_image", "no image"},
      {R"({"question": "q", "chosen": "{'from': 'gpt', 'value': 'unclosed}", "rejected": "r"})", "bad_literal",
       "field 'chosen': not a valid Python literal (at character 25: string opened here with ' is not closed)"},
      {R"({"question": "q", "chosen": {"from": "human", "value": "c"}, "rejected": "r"})", "bad_role", "not gpt"},
      {R"({"image": "nope.png", "question": "<image>\nq", "chosen": "c", "rejected": "r"})", "missing_image",
       "image file 'nope.png' does not exist"},
      {R"({"question": "q", "chosen": "c", "rejected": "r", "ref_win_logp": "x"})", "wrong_type", "ref_win_logp"},
      {R"(["not", "an", "object"])", "not_an_object", "found array"},
      {R"({"question": "q", "chosen": "c", )", "bad_json", "invalid JSON"},
  };
  for (const auto& c : cases) {
    const std::string file = write("bad.jsonl", "{\"question\": \"q\", \"chosen\": \"c\", \"rejected\": \"r\"}\n\n" + c.row + "\n");
    const std::string msg = load_error(RowKind::Preference, file);
    EXPECT_EQ(msg.rfind(file + ":3: " + c.reason + ": ", 0), 0u) << msg;  // line 3: blank lines count
    EXPECT_NE(msg.find(c.detail), std::string::npos) << msg;
  }
}

TEST_F(Formats, UnreadableImageIsABadRow) {
  const std::string not_png = write("fake.png", "this is text");
  const std::string empty = write("empty.png", "");
  const std::string file = write("p.jsonl", R"({"image": ")" + not_png + R"(", "question": "<image>\nq", "chosen": "c", "rejected": "r"}
{"image": ")" + empty + R"(", "question": "<image>\nq", "chosen": "c", "rejected": "r"}
{"image": ")" + dir_.string() + R"(", "question": "<image>\nq", "chosen": "c", "rejected": "r"}
)");
  const LoadResult r = load(RowKind::Preference, file, "on_bad_row: skip");
  ASSERT_EQ(r.bad_rows.size(), 3u);
  EXPECT_EQ(r.counts.at("skipped/unreadable_image"), 3);
  EXPECT_NE(r.bad_rows[0].message.find("is not an image (expected JPEG, PNG, GIF, BMP or WebP)"), std::string::npos)
      << r.bad_rows[0].message;
  EXPECT_NE(r.bad_rows[1].message.find("is empty"), std::string::npos);
  EXPECT_NE(r.bad_rows[2].message.find("not a regular file"), std::string::npos);
  // check_images: false leaves the files alone.
  EXPECT_EQ(load(RowKind::Preference, file, "check_images: false").rows.size(), 3u);
}

TEST_F(Formats, SkipCountsEveryBadRowPerReasonAndKeepsTheGoodOnes) {
  const std::string file = write("mixed.jsonl", R"({"question": "q1", "chosen": "c", "rejected": "r"}
{"question": "q2", "rejected": "r"}
not json
{"question": "q3", "chosen": "", "rejected": "r"}
{"question": "q4", "rejected": "r"}
{"question": "q5", "chosen": "c", "rejected": "r"}
)");
  const LoadResult r = load(RowKind::Preference, file, "on_bad_row: skip");
  EXPECT_EQ(r.rows_read, 6);
  ASSERT_EQ(r.rows.preferences.size(), 2u);
  EXPECT_EQ(r.rows.preferences[1].prompt[0].value, "q5");
  ASSERT_EQ(r.bad_rows.size(), 4u);
  EXPECT_EQ(r.counts.at("skipped/missing_field"), 2);
  EXPECT_EQ(r.counts.at("skipped/bad_json"), 1);
  EXPECT_EQ(r.counts.at("skipped/empty_response"), 1);
  EXPECT_EQ(r.bad_rows[0].text(), file + ":2: missing_field: missing field 'chosen'");
  EXPECT_EQ(r.bad_rows[1].row, 3);
  EXPECT_EQ(r.bad_rows[2].row, 4);
}

TEST_F(Formats, NormalizedPreferenceRowsReadBackUnchanged) {
  const LoadResult first = load(RowKind::Preference, (kFixture / "expected" / "preference_logps.jsonl").string(),
                                "image_folder: " + kImages.string());
  RowSet rows = first.rows;
  flip(rows.preferences[1]);
  write_rows(rows, dir_ / "rows.jsonl");
  const LoadResult again = load(RowKind::Preference, (dir_ / "rows.jsonl").string());
  ASSERT_EQ(again.rows.preferences.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    json a = to_json(rows.preferences[i]), b = to_json(again.rows.preferences[i]);
    a.erase("source");
    b.erase("source");
    EXPECT_EQ(a, b) << i;
  }
  EXPECT_TRUE(again.rows.preferences[1].flipped);
}

// ---- llava_json --------------------------------------------------------------------------------------------

TEST_F(Formats, LlavaConversationsFromJsonArrayAndJsonl) {
  const std::string rows = R"({"id": "000000033471", "image": "wide.png", "conversations": [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "Ellipses."}, {"from": "human", "value": "Colours?"}, {"from": "gpt", "value": "Bright ones."}]}
{"id": 7, "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]})";
  const std::string jsonl = write("c.jsonl", rows + "\n");
  std::string array = rows;
  array.replace(array.find("\n{"), 1, ",\n");
  const std::string json_file = write("c.json", "[\n" + array + "\n]\n");
  for (const auto& file : {jsonl, json_file}) {
    const LoadResult r = load(RowKind::Conversation, file, "image_folder: " + kImages.string());
    ASSERT_EQ(r.rows.conversations.size(), 2u) << file;
    const ConversationRow& a = r.rows.conversations[0];
    EXPECT_EQ(a.id, "000000033471");
    EXPECT_EQ(a.images, std::vector<std::string>{kWide});
    ASSERT_EQ(a.turns.size(), 4u);
    EXPECT_EQ(a.turns[3].value, "Bright ones.");
    EXPECT_EQ(r.rows.conversations[1].id, "7");
    EXPECT_EQ(r.rows.conversations[1].turns[0].from, "system");
    EXPECT_EQ(r.rows.conversations[1].origin.row, 2);
  }
}

TEST_F(Formats, BadConversationRows) {
  struct Case {
    std::string row, reason, detail;
  };
  const std::vector<Case> cases = {
      {R"({"id": "x"})", "missing_field", "missing field 'conversations'"},
      {R"({"conversations": {"from": "human"}})", "wrong_type", "field 'conversations': expected a list of turns"},
      {R"({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]})", "bad_turn_order",
       "expected a human turn, found gpt"},
      {R"({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]})", "empty_response",
       "conversations[1]"},
      {R"({"conversations": [{"from": "human", "value": "q"}]})", "empty_response", "no gpt reply"},
      {R"({"conversations": [{"from": "robot", "value": "q"}, {"from": "gpt", "value": "a"}]})", "bad_role",
       "speaker 'robot'"},
      {R"({"conversations": [{"from": "human"}, {"from": "gpt", "value": "a"}]})", "missing_field", "missing 'value'"},
      {R"({"image": ")" + kWide + R"(", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})",
       "no_image_token", "(set image_token: add"},
      {R"({"image": ")" + kWide + R"(", "conversations": [{"from": "human", "value": "<image><image>q"}, {"from": "gpt", "value": "a"}]})",
       "image_token_mismatch", "2 \"<image>\" placeholders for 1 image(s)"},
  };
  for (const auto& c : cases) {
    const std::string file = write("bad.json", "[\n" + c.row + "\n]");
    const std::string msg = load_error(RowKind::Conversation, file);
    EXPECT_EQ(msg.rfind(file + ":1: " + c.reason + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.detail), std::string::npos) << msg;
  }
}

TEST_F(Formats, ImageTokenAddPrependsToTheFirstHumanTurn) {
  const std::string file = write("c.jsonl", R"({"image": ")" + kWide + R"(", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]})" "\n");
  const LoadResult r = load(RowKind::Conversation, file, "image_token: add");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows.conversations[0].turns[0].value, "<image>\nq");
}

TEST_F(Formats, BrokenJsonArrayStopsWithRowAndLine) {
  const std::string file = write("broken.json", "[\n{\"id\": 1},\n{\"id\": 2,,}\n]");
  const std::string msg = load_error(RowKind::Conversation, file, "on_bad_row: skip");
  EXPECT_EQ(msg.rfind(file + ": row 2 (line 3): invalid JSON", 0), 0u) << msg;
  // A pretty-printed single object is neither: its first line is reported, with a hint.
  const std::string obj = write("obj.json", "{\n  \"a\": 1\n}\n");
  const std::string msg2 = load_error(RowKind::Conversation, obj);
  EXPECT_EQ(msg2.rfind(obj + ":1: bad_json: invalid JSON", 0), 0u) << msg2;
  EXPECT_NE(msg2.find("neither a JSON array nor JSONL"), std::string::npos) << msg2;
}

TEST_F(Formats, ImageFolderRemapRewritesPathsBeforeTheCheck) {
  const std::string file = write("c.jsonl", R"({"image": "/old/place/wide.png", "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]}
{"image": "/old/placebo/wide.png", "conversations": [{"from": "human", "value": "<image>q"}, {"from": "gpt", "value": "a"}]})" "\n");
  const LoadResult r = load(RowKind::Conversation, file,
                            "on_bad_row: skip, transforms: [{image_folder: {from: /old/place, to: " + kImages.string() + "}}]");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows.conversations[0].images[0], kWide);
  EXPECT_EQ(r.counts.at("images_remapped"), 1);
  ASSERT_EQ(r.bad_rows.size(), 1u);  // "/old/placebo" is not under "/old/place"
  EXPECT_EQ(r.bad_rows[0].reason, "missing_image");
}

// ---- scored_candidates ---------------------------------------------------------------------------------------

TEST_F(Formats, ScoredCandidatesGoodAndBad) {
  const std::string good = R"({"id": "g1", "image": ")" + kWide + R"(", "question": "What is shown?", "candidates": [
    {"response": "Ellipses.", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 2, "Verbosity": 1}},
    {"text": "A dog.", "Helpfulness": 1, "Correctness": 0, "Coherence": 3, "Complexity": 1, "Verbosity": 1}]})";
  std::string one_line = good;
  for (auto& ch : one_line)
    if (ch == '\n') ch = ' ';
  const std::string file = write("s.jsonl", one_line + "\n" +
      R"({"id": "g2", "question": "q", "candidates": [{"response": "a", "scores": {"Helpfulness": 5, "Correctness": 4, "Coherence": 4, "Complexity": 2, "Verbosity": 1}}]}
{"id": "g3", "question": "q", "candidates": [{"response": "a", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 2}}]}
{"id": "g4", "question": "q", "candidates": [{"response": "", "scores": {}}]}
{"id": "g5", "question": "q", "candidates": [{"response": "a", "scores": {"Helpfulness": "4", "Correctness": 4, "Coherence": 4, "Complexity": 2, "Verbosity": 1}}]}
)");
  const LoadResult r = load(RowKind::ScoredCandidates, file, "image_token: add, on_bad_row: skip");
  ASSERT_EQ(r.rows.scored.size(), 1u);
  const ScoredCandidatesRow& g = r.rows.scored[0];
  EXPECT_EQ(g.question, "<image>\nWhat is shown?");
  ASSERT_EQ(g.candidates.size(), 2u);
  EXPECT_EQ(g.candidates[1].response, "A dog.");
  EXPECT_EQ(g.candidates[1].scores.at("Coherence"), 3);
  ASSERT_EQ(r.bad_rows.size(), 4u);
  EXPECT_EQ(r.bad_rows[0].text(), file + ":2: bad_score: field 'candidates[0].Helpfulness': 5 is outside 0-4");
  EXPECT_EQ(r.bad_rows[1].text(), file + ":3: bad_score: field 'candidates[0]': missing attribute score 'Verbosity'");
  EXPECT_EQ(r.bad_rows[2].reason, "empty_response");
  EXPECT_EQ(r.bad_rows[3].text(), file + ":5: bad_score: field 'candidates[0].Helpfulness': expected a number 0-4, found string");
}
