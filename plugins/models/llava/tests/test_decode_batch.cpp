// Continuous batching (LlavaModel::start_batch): requests that join a running batch at different steps, leave it
// when done or cancelled, and still get exactly what generate() gives each of them alone, on the reference fixture
// (and on the GPU with MMR_TEST_DEVICE=cuda).
#include <gtest/gtest.h>

#include <map>
#include <memory>

#include "core/api/error.h"
#include "fixture.h"
#include "internal.h"

using namespace llava_fixture;

namespace {

class LlavaBatch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = new LlavaModel(base_options()); }
  static void TearDownTestSuite() { delete model_; }
  static std::vector<mmr::ChatSample> samples() {
    std::vector<mmr::ChatSample> out;
    for (const auto& row : read_jsonl(fixture() / "expected" / "tokenization.jsonl")) out.push_back(sample_of(row));
    return out;
  }
  static LlavaModel* model_;
};
LlavaModel* LlavaBatch::model_ = nullptr;

mmr::GenerationConfig greedy(int64_t max_new_tokens, bool stop_at_eos = false) {
  mmr::GenerationConfig g;
  g.max_new_tokens = max_new_tokens;
  g.stop_at_eos = stop_at_eos;
  return g;
}

// Steps the batch until it is empty; checks each step has one event per row and that a row's text only grows.
std::map<uint64_t, mmr::Generation> drain(mmr::DecodeBatch& batch, std::map<uint64_t, std::string>& texts) {
  std::map<uint64_t, mmr::Generation> done;
  while (batch.size() > 0) {
    const size_t rows = batch.size();
    const auto events = batch.step();
    EXPECT_EQ(events.size(), rows);
    for (const auto& ev : events) {
      EXPECT_EQ(ev.text.rfind(texts[ev.id], 0), 0u) << "the text of request " << ev.id << " changed its past";
      texts[ev.id] = ev.text;
      if (ev.finished) done[ev.id] = ev.result;
    }
  }
  return done;
}

}  // namespace

TEST_F(LlavaBatch, RequestsJoiningAtDifferentStepsGetWhatGenerateGivesThemAlone) {
  const auto s = samples();
  ASSERT_GE(s.size(), 3u);
  std::vector<mmr::GenerationConfig> configs = {greedy(9), greedy(4), greedy(7), greedy(1), greedy(6, true)};
  mmr::GenerationConfig sampled = greedy(8);
  sampled.temperature = 1.5;
  sampled.top_p = 0.95;
  sampled.seed = 7;
  configs.push_back(sampled);
  // A stop string the model is known to produce for the first prompt.
  const mmr::Generation full = model_->generate({s[0]}, greedy(12))[0];
  ASSERT_GE(full.text.size(), 4u);
  mmr::GenerationConfig stopped = greedy(12);
  stopped.stop_strings = {full.text.substr(full.text.size() / 2, 2)};
  configs.push_back(stopped);

  auto batch = model_->start_batch();
  ASSERT_TRUE(batch);
  std::map<uint64_t, std::string> texts;
  std::map<uint64_t, mmr::Generation> done;
  auto step = [&](int n) {
    for (int i = 0; i < n && batch->size() > 0; ++i)
      for (const auto& ev : batch->step()) {
        texts[ev.id] = ev.text;
        if (ev.finished) done[ev.id] = ev.result;
      }
  };
  // Joins at steps 0, 0, 2, 3 (a longer prompt than the rows already there), 5 and 5, and 6.
  batch->add(0, s[0], configs[0]);
  batch->add(1, s[1], configs[1]);
  step(2);
  batch->add(2, s[2], configs[2]);
  step(1);
  batch->add(3, s[0], configs[3]);
  step(2);
  batch->add(4, s[1], configs[4]);
  batch->add(5, s[2], configs[5]);
  step(1);
  batch->add(6, s[0], configs[6]);
  for (const auto& [id, g] : drain(*batch, texts)) done[id] = g;

  const std::vector<size_t> prompt_of = {0, 1, 2, 0, 1, 2, 0};
  ASSERT_EQ(done.size(), configs.size());
  for (uint64_t id = 0; id < configs.size(); ++id) {
    const mmr::Generation alone = model_->generate({s[prompt_of[id]]}, configs[id])[0];
    const mmr::Generation& got = done.at(id);
    EXPECT_EQ(got.token_ids, alone.token_ids) << "request " << id;
    EXPECT_EQ(got.text, alone.text) << "request " << id;
    EXPECT_EQ(got.finish_reason, alone.finish_reason) << "request " << id;
    EXPECT_EQ(got.prompt_tokens, alone.prompt_tokens) << "request " << id;
  }
  EXPECT_EQ(done.at(3).token_ids.size(), 1u);
  EXPECT_EQ(done.at(6).finish_reason, "stop_string");
  // The last event's text is the reply before the stop string is cut from it.
  EXPECT_EQ(texts.at(6).rfind(done.at(6).text, 0), 0u);
  EXPECT_NE(texts.at(6).find(stopped.stop_strings[0]), std::string::npos);
}

TEST_F(LlavaBatch, ACancelledRequestLeavesAndTheOthersAreUnchanged) {
  const auto s = samples();
  auto batch = model_->start_batch();
  batch->add(10, s[0], greedy(8));
  batch->add(11, s[1], greedy(8));
  batch->add(12, s[2], greedy(8));
  batch->step();
  batch->step();
  batch->cancel(11);
  batch->cancel(99);  // not in the batch: ignored
  EXPECT_EQ(batch->size(), 2u);
  std::map<uint64_t, std::string> texts;
  std::map<uint64_t, mmr::Generation> done = drain(*batch, texts);
  EXPECT_EQ(done.count(11), 0u);
  EXPECT_EQ(done.at(10).token_ids, model_->generate({s[0]}, greedy(8))[0].token_ids);
  EXPECT_EQ(done.at(12).token_ids, model_->generate({s[2]}, greedy(8))[0].token_ids);
}

TEST_F(LlavaBatch, APromptTheModelCannotReadIsRefusedAndTheBatchGoesOn) {
  const auto s = samples();
  auto batch = model_->start_batch();
  batch->add(1, s[0], greedy(5));
  batch->step();
  mmr::ChatSample bad = s[0];
  bad.turns[0].text = "<image>\nWhat is this?";
  bad.images = {(fixture() / "images" / "no-such-image.png").string()};
  EXPECT_ANY_THROW(batch->add(2, bad, greedy(5)));
  EXPECT_EQ(batch->size(), 1u);
  std::map<uint64_t, std::string> texts;
  const auto done = drain(*batch, texts);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done.at(1).token_ids, model_->generate({s[0]}, greedy(5))[0].token_ids);
}

// A served request must fit the model (the fixture: max_length 2048, max_position_embeddings 2048): a prompt past
// max_length is a DataError the server answers 400 with, not cut; a reply that would pass the context ends there.
TEST_F(LlavaBatch, ARequestIsCutAtTheContextAndAPromptPastMaxLengthIsRefused) {
  const auto s = samples();
  auto batch = model_->start_batch();
  batch->add(1, s[0], greedy(5));
  mmr::ChatSample long_text;
  std::string words;
  for (int i = 0; i < 2100; ++i) words += " seven";
  long_text.turns = {{"human", words}};
  try {
    batch->add(2, long_text, greedy(1));
    ADD_FAILURE() << "a prompt past max_length was accepted";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("more than this model takes (2048: its max_length)"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(batch->size(), 1u);
  batch->add(3, s[1], greedy(4000));  // past the context: cut
  // Stepped without drain()'s check that a text only grows: ~1,900 tokens of a random model's output include byte
  // tokens whose partial decodes change (seen with the GQA fixture).
  std::map<uint64_t, mmr::Generation> done;
  while (batch->size() > 0)
    for (const auto& ev : batch->step())
      if (ev.finished) done[ev.id] = ev.result;
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done.at(1).token_ids, model_->generate({s[0]}, greedy(5))[0].token_ids);
  const mmr::Generation& cut = done.at(3);
  EXPECT_EQ(cut.prompt_tokens + static_cast<int64_t>(cut.token_ids.size()), 2048) << "ends at the last position";
  EXPECT_EQ(cut.finish_reason, "length");
}

// The streamed text's rule against what sentencepiece gives for byte tokens: "€" is E2 82 AC; its first one or two
// bytes alone decode to U+FFFD each, which the next byte replaces. Held back, the text only grows.
TEST(LlavaStreamedText, HoldsBackAnIncompleteCharacter) {
  using mmr::llava::without_incomplete_tail;
  const std::string fffd = "\xEF\xBF\xBD", euro = "\xE2\x82\xAC";
  EXPECT_EQ(without_incomplete_tail("costs 5" + fffd), "costs 5");
  EXPECT_EQ(without_incomplete_tail("costs 5" + fffd + fffd), "costs 5");
  EXPECT_EQ(without_incomplete_tail("costs 5" + euro), "costs 5" + euro);
  EXPECT_EQ(without_incomplete_tail(fffd + " then more"), fffd + " then more") << "only a trailing one waits";
  EXPECT_EQ(without_incomplete_tail(fffd), "");
  EXPECT_EQ(without_incomplete_tail(""), "");
}
