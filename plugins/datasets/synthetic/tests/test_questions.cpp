// Visual questions: every answer in the generated files is re-derived from the decoded PNG pixels.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <regex>
#include <set>

#include "plugins/datasets/synthetic/questions.h"
#include "png_probe.h"

namespace fs = std::filesystem;

namespace {

const std::set<std::string> kShapes = {"circle", "square", "triangle", "star", "cross"};
const std::set<std::string> kColours = {"red",    "green", "blue",  "yellow", "purple",
                                        "orange", "pink",  "brown", "black",  "grey"};

std::string singular(const std::string& plural) {
  if (plural.size() > 4 && plural.compare(plural.size() - 4, 4, "sses") == 0) return plural.substr(0, plural.size() - 2);
  return plural.substr(0, plural.size() - 1);
}

// The short answer a question has, computed from what the decoder saw. nullopt when the question would be
// ambiguous (which the generator must never ask).
struct Expected {
  std::string category;
  std::optional<std::string> short_answer;
};

Expected answer_from_pixels(const std::string& question, const synth_test::Decoded& seen) {
  std::smatch m;
  static const std::regex count_re(R"(How many (?:(\w+) )?(\w+) are there\?)");
  static const std::regex colour_re(R"(What colour is the (\w+)(?: (?:at the (.+)|in the (centre)))?\?)");
  static const std::regex where_re(R"(Where is the (\w+) (\w+)\?)");
  static const std::regex exists_re(R"(Is there an? (\w+) (\w+) in the image\?)");
  if (std::regex_match(question, m, count_re)) {
    const std::string colour = m[1].matched ? m[1].str() : "";
    const std::string noun = singular(m[2].str());
    int n = 0;
    for (const auto& s : seen.objects) {
      if (!colour.empty() && s.colour != colour) continue;
      if (noun != "shape" && s.shape != noun) continue;
      ++n;
    }
    return {"count", std::to_string(n)};
  }
  if (std::regex_match(question, m, colour_re)) {
    const std::string shape = m[1].str();
    const std::string where = m[3].matched ? "centre" : (m[2].matched ? m[2].str() : "");
    std::vector<std::string> colours;
    for (const auto& s : seen.objects) {
      if (s.shape == shape && (where.empty() || s.position == where)) colours.push_back(s.colour);
    }
    if (colours.size() != 1) return {"colour", std::nullopt};
    return {"colour", colours[0]};
  }
  if (std::regex_match(question, m, where_re)) {
    std::vector<std::string> places;
    for (const auto& s : seen.objects) {
      if (s.colour == m[1].str() && s.shape == m[2].str()) places.push_back(s.position);
    }
    if (places.size() != 1) return {"position", std::nullopt};
    return {"position", places[0]};
  }
  if (std::regex_match(question, m, exists_re)) {
    bool found = false;
    for (const auto& s : seen.objects) found |= s.colour == m[1].str() && s.shape == m[2].str();
    return {"existence", found ? "yes" : "no"};
  }
  return {"unparsed", std::nullopt};
}

// The short answer stated by a full answer sentence.
std::string short_from_sentence(const std::string& category, const std::string& answer) {
  std::smatch m;
  if (category == "count") {
    if (std::regex_match(answer, m, std::regex(R"(There are no .+\.)"))) return "0";
    if (std::regex_match(answer, m, std::regex(R"(There (?:is|are) (\d+) .+\.)"))) return m[1].str();
  } else if (category == "colour") {
    if (std::regex_match(answer, m, std::regex(R"(The .+ is (\w+)\.)"))) return m[1].str();
  } else if (category == "position") {
    if (std::regex_match(answer, m, std::regex(R"(The \w+ \w+ is in the centre\.)"))) return "centre";
    if (std::regex_match(answer, m, std::regex(R"(The \w+ \w+ is at the (.+)\.)"))) return m[1].str();
  } else if (category == "existence") {
    if (answer.rfind("Yes, there is ", 0) == 0) return "yes";
    if (answer.rfind("No, there is no ", 0) == 0) return "no";
  }
  return "<unparsed: " + answer + ">";
}

}  // namespace

TEST(SyntheticVqa, EvalAnswersMatchTheDecodedPixels) {
  const fs::path world = synth_test::small_world();
  std::map<std::string, synth_test::Decoded> decoded;
  std::map<std::string, int> per_category;
  for (const auto& row : synth_test::read_jsonl(world / "vqa_eval.jsonl")) {
    const std::string image = row.at("image");
    if (!decoded.count(image)) decoded[image] = synth_test::decode_scene(world / "images" / image, {255, 255, 255});
    const Expected e = answer_from_pixels(row.at("text"), decoded[image]);
    ASSERT_EQ(e.category, row.at("category")) << row.dump();
    ASSERT_TRUE(e.short_answer.has_value()) << "ambiguous question: " << row.dump();
    EXPECT_EQ(*e.short_answer, row.at("short_answer")) << row.dump();
    EXPECT_EQ(short_from_sentence(e.category, row.at("answer")), *e.short_answer) << row.dump();
    ++per_category[e.category];
  }
  for (const char* c : {"count", "colour", "position", "existence"}) EXPECT_GT(per_category[c], 5) << c;
}

TEST(SyntheticVqa, TrainConversationsMatchTheDecodedPixels) {
  const fs::path world = synth_test::small_world();
  const nlohmann::json rows = synth_test::read_json(world / "vqa_train.json");
  ASSERT_TRUE(rows.is_array());
  ASSERT_GT(rows.size(), 100u);
  std::map<std::string, synth_test::Decoded> decoded;
  std::set<std::string> ids;
  for (const auto& row : rows) {
    ASSERT_EQ(row.size(), 3u) << row.dump();
    const std::string image = row.at("image");
    EXPECT_TRUE(ids.insert(row.at("id").get<std::string>()).second) << "duplicate id " << row.at("id");
    const auto& conv = row.at("conversations");
    ASSERT_EQ(conv.size(), 2u);
    EXPECT_EQ(conv[0].at("from"), "human");
    EXPECT_EQ(conv[1].at("from"), "gpt");
    const std::string human = conv[0].at("value");
    ASSERT_EQ(human.rfind("<image>\n", 0), 0u) << human;
    if (!decoded.count(image)) decoded[image] = synth_test::decode_scene(world / "images" / image, {255, 255, 255});
    const Expected e = answer_from_pixels(human.substr(8), decoded[image]);
    ASSERT_TRUE(e.short_answer.has_value()) << row.dump();
    EXPECT_EQ(short_from_sentence(e.category, conv[1].at("value")), *e.short_answer) << row.dump();
  }
}

TEST(SyntheticVqa, NoQuestionRepeatsWithinAnImage) {
  std::map<std::string, std::set<std::string>> asked;
  for (const auto& row : synth_test::read_jsonl(synth_test::small_world() / "vqa_eval.jsonl")) {
    EXPECT_TRUE(asked[row.at("image")].insert(row.at("text").get<std::string>()).second) << row.dump();
  }
}

TEST(SyntheticVqa, HandMadeSceneGetsTheRightSentences) {
  using namespace mmr::synthetic;
  ImageTruth truth;
  truth.image = "hand.png";
  truth.width = truth.height = 300;
  auto object = [](Shape shape, int colour, Box b) {
    SceneObject o;
    o.shape = shape;
    o.colour = colour;
    o.bbox = o.cell = b;
    o.position = position_of(b, 300, 300);
    return o;
  };
  // Two red circles (top left, bottom right) and a blue triangle in the centre.
  truth.objects = {object(Shape::kCircle, 0, {10, 10, 49, 49}), object(Shape::kCircle, 0, {250, 250, 289, 289}),
                   object(Shape::kTriangle, 2, {130, 130, 169, 169})};
  Vocabulary vocab;
  vocab.shapes = {Shape::kCircle, Shape::kTriangle};
  vocab.colours = {0, 2};
  std::map<std::string, std::string> answers;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Rng rng(seed);
    for (const VqaItem& item : make_vqa_items(truth, vocab, all_question_types(), 4, rng, nullptr)) {
      answers[item.question] = item.answer;
    }
  }
  EXPECT_EQ(answers["How many red circles are there?"], "There are 2 red circles.");
  EXPECT_EQ(answers["How many triangles are there?"], "There is 1 triangle.");
  EXPECT_EQ(answers["How many blue circles are there?"], "There are no blue circles.");
  EXPECT_EQ(answers["How many shapes are there?"], "There are 3 shapes.");
  EXPECT_EQ(answers["What colour is the triangle?"], "The triangle is blue.");
  EXPECT_EQ(answers["What colour is the circle at the top left?"], "The circle at the top left is red.");
  EXPECT_EQ(answers["Where is the blue triangle?"], "The blue triangle is in the centre.");
  EXPECT_EQ(answers["Is there a red triangle in the image?"], "No, there is no red triangle in the image.");
  EXPECT_EQ(answers["Is there a red circle in the image?"], "Yes, there is a red circle in the image.");
  EXPECT_EQ(answers.count("Where is the red circle?"), 0u) << "two red circles: position would be ambiguous";
  EXPECT_EQ(answers.count("What colour is the circle?"), 0u) << "two circles: colour needs a position";
}
