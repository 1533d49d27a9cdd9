// POPE probes: balanced, negatives truly absent, popular/adversarial negatives chosen by their rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <regex>
#include <set>

#include "plugins/datasets/synthetic/pope.h"
#include "png_probe.h"

namespace fs = std::filesystem;
using namespace mmr::synthetic;

namespace {

// Categories present per image, read from ground_truth.jsonl (not from the POPE code).
std::map<std::string, std::set<std::string>> present_by_image(const fs::path& world) {
  std::map<std::string, std::set<std::string>> out;
  for (const auto& row : synth_test::read_jsonl(world / "ground_truth.jsonl")) {
    auto& set = out[row.at("image").get<std::string>()];
    for (const auto& o : row.at("objects")) set.insert(o.at("colour").get<std::string>() + " " + o.at("shape").get<std::string>());
  }
  return out;
}

std::string object_of(const std::string& text) {
  std::smatch m;
  static const std::regex re(R"(Is there an? (\w+ \w+) in the image\?)");
  if (!std::regex_match(text, m, re)) return "<unparsed: " + text + ">";
  return m[1].str();
}

std::vector<std::string> all_categories() {
  std::vector<std::string> out;
  for (const auto& s : synth_test::small_world_config().shapes) {
    for (const auto& c : synth_test::small_world_config().colours) out.push_back(c + " " + s);
  }
  return out;
}

}  // namespace

TEST(SyntheticPope, RowsAreBalancedAlternatingAndTruthful) {
  const fs::path world = synth_test::small_world();
  const auto present = present_by_image(world);
  for (const char* split : {"random", "popular", "adversarial"}) {
    const auto rows = synth_test::read_jsonl(world / (std::string("pope_") + split + ".jsonl"));
    // Per held-out image: min(3, #present categories) yes and as many no (30 categories, <= 6 objects).
    size_t expected_rows = 0;
    for (const auto& [image, set] : present) {
      if (image.rfind("eval_", 0) == 0) expected_rows += 2 * std::min<size_t>(3, set.size());
    }
    ASSERT_EQ(rows.size(), expected_rows) << split;
    std::map<std::string, int> yes, no;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& row = rows[i];
      EXPECT_EQ(row.at("question_id"), static_cast<int>(i) + 1);
      EXPECT_EQ(row.size(), 4u);
      const std::string image = row.at("image");
      EXPECT_EQ(image.rfind("eval_", 0), 0u) << "POPE probes only held-out images";
      const std::string object = object_of(row.at("text"));
      const bool is_present = present.at(image).count(object) > 0;
      EXPECT_EQ(row.at("label"), i % 2 == 0 ? "yes" : "no") << "rows alternate yes, no";
      EXPECT_EQ(row.at("label") == "yes", is_present) << split << " " << row.dump();
      ++(row.at("label") == "yes" ? yes : no)[image];
    }
    EXPECT_EQ(yes, no) << split;
  }
}

TEST(SyntheticPope, TheSameYesProbesInEverySplit) {
  const fs::path world = synth_test::small_world();
  auto yes_texts = [&](const char* split) {
    std::vector<std::string> out;
    for (const auto& row : synth_test::read_jsonl(world / (std::string("pope_") + split + ".jsonl"))) {
      if (row.at("label") == "yes") out.push_back(row.at("image").get<std::string>() + row.at("text").get<std::string>());
    }
    return out;
  };
  EXPECT_EQ(yes_texts("random"), yes_texts("popular"));
  EXPECT_EQ(yes_texts("random"), yes_texts("adversarial"));
}

TEST(SyntheticPope, PopularAndAdversarialNegativesFollowTheirRules) {
  const fs::path world = synth_test::small_world();
  const auto present = present_by_image(world);
  std::map<std::string, int> frequency;
  std::map<std::pair<std::string, std::string>, int> together;
  for (const auto& [image, set] : present) {
    for (const auto& a : set) {
      ++frequency[a];
      for (const auto& b : set) {
        if (a != b) ++together[{a, b}];
      }
    }
  }
  for (const char* split : {"popular", "adversarial"}) {
    std::map<std::string, std::set<std::string>> negatives;
    for (const auto& row : synth_test::read_jsonl(world / (std::string("pope_") + split + ".jsonl"))) {
      if (row.at("label") == "no") negatives[row.at("image")].insert(object_of(row.at("text")));
    }
    int differs_from_random_rule = 0;
    for (const auto& [image, chosen] : negatives) {
      auto score = [&](const std::string& c) {
        if (std::string(split) == "popular") return frequency[c];
        int s = 0;
        for (const auto& p : present.at(image)) s += together[{p, c}];
        return s;
      };
      int worst_chosen = INT32_MAX, best_unchosen = INT32_MIN;
      for (const auto& c : all_categories()) {
        if (present.at(image).count(c)) continue;
        if (chosen.count(c)) worst_chosen = std::min(worst_chosen, score(c));
        else best_unchosen = std::max(best_unchosen, score(c));
      }
      EXPECT_GE(worst_chosen, best_unchosen) << split << " " << image;
      differs_from_random_rule += worst_chosen > 0;
    }
    EXPECT_GT(differs_from_random_rule, 0) << split;
  }
}

TEST(SyntheticPope, HandMadeWorldPicksTheExpectedNegatives) {
  // Categories (circle, square, triangle) x (red, blue): 0 red circle, 1 blue circle, 2 red square,
  // 3 blue square, 4 red triangle, 5 blue triangle.
  Vocabulary vocab;
  vocab.shapes = {Shape::kCircle, Shape::kSquare, Shape::kTriangle};
  vocab.colours = {0, 2};
  auto image = [&](std::vector<int> categories, const std::string& name) {
    ImageTruth t;
    t.image = name;
    for (int c : categories) {
      SceneObject o;
      o.shape = vocab.shape_of(c);
      o.colour = vocab.colour_of(c);
      t.objects.push_back(o);
    }
    return t;
  };
  // Frequencies: red circle 4, blue circle 1, red square 2, blue square 3, red triangle 1, blue triangle 0.
  // Co-occurrence with red circle: blue circle 1, red square 2, others 0.
  const std::vector<ImageTruth> world = {image({0, 1}, "a"), image({0, 2}, "b"), image({0, 2}, "c"),
                                         image({3}, "d"),    image({3}, "e"),    image({3, 4}, "f"),
                                         image({0}, "probe")};
  const PopeStatistics stats = pope_statistics(world, vocab);
  EXPECT_EQ(stats.frequency, (std::vector<int64_t>{4, 1, 2, 3, 1, 0}));
  EXPECT_EQ(stats.cooccurrence[0][2], 2);
  const std::vector<int> present = {0};
  EXPECT_EQ(popular_negatives(present, stats, 2), (std::vector<int>{3, 2}));
  EXPECT_EQ(adversarial_negatives(present, stats, 2), (std::vector<int>{2, 1}));
  // k = 1 yes probe (only one category present) and 1 no probe per split.
  const PopeSplits probes = make_pope({world.back()}, stats, vocab, 3, 1);
  EXPECT_EQ(probes.images_with_fewer_probes, 1);
  ASSERT_EQ(probes.popular.size(), 2u);
  EXPECT_EQ(probes.popular[0].text, "Is there a red circle in the image?");
  EXPECT_EQ(probes.popular[1].text, "Is there a blue square in the image?");
  EXPECT_EQ(probes.adversarial[1].text, "Is there a red square in the image?");
  EXPECT_NE(probes.random[1].category, 0);
  EXPECT_EQ(to_json(probes.popular[1]).dump(),
            R"({"question_id":2,"image":"probe","text":"Is there a blue square in the image?","label":"no"})");
}
