#include "plugins/datasets/synthetic/questions.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <set>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/names.h"

namespace mmr::synthetic {

namespace {
const EnumNames<QuestionType>& question_types() {
  static const EnumNames<QuestionType> kNames({"count", "colour", "position", "existence"}, "question type", "types");
  return kNames;
}
}  // namespace

const std::vector<QuestionType>& all_question_types() { return question_types().values(); }
const std::string& question_type_name(QuestionType type) { return question_types().name(type); }
QuestionType question_type_from_name(const std::string& name, const std::string& key) {
  return question_types().from_name(name, key);
}

std::string plural_of(const std::string& noun) {
  if (noun.size() >= 2 && noun.compare(noun.size() - 2, 2, "ss") == 0) return noun + "es";
  return noun + "s";
}

std::string position_with_preposition(Position p) {
  if (p == Position{VPos::kMiddle, HPos::kCentre}) return "in the centre";
  return "at the " + position_phrase(p);
}

std::string capitalised(const std::string& text) {
  std::string out = text;
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z') out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

namespace {

std::string count_sentence(int n, const std::string& singular, const std::string& plural) {
  if (n == 0) return fmt::format("There are no {}.", plural);
  if (n == 1) return fmt::format("There is 1 {}.", singular);
  return fmt::format("There are {} {}.", n, plural);
}

std::optional<VqaItem> make_count(const ImageTruth& truth, const Vocabulary& vocab, Rng& rng) {
  // Variants, weighted 4:2:2:1:1 — (colour, shape) present, shape, colour, everything, (colour, shape) absent.
  const size_t variant = rng.weighted_index({4, 2, 2, 1, 1});
  VqaItem item;
  item.type = QuestionType::kCount;
  std::function<bool(const SceneObject&)> matches;
  if (variant == 0 || variant == 4) {
    std::vector<int> present, absent;
    for (int c = 0; c < vocab.num_categories(); ++c) {
      const bool here = std::any_of(truth.objects.begin(), truth.objects.end(), [&](const SceneObject& o) {
        return vocab.category_of(o.shape, o.colour) == c;
      });
      (here ? present : absent).push_back(c);
    }
    const std::vector<int>& pool = variant == 0 ? present : absent;
    if (pool.empty()) return std::nullopt;
    const int c = rng.pick(pool);
    const Shape shape = vocab.shape_of(c);
    const int colour = vocab.colour_of(c);
    item.noun_singular = vocab.name_of(c);
    matches = [=](const SceneObject& o) { return o.shape == shape && o.colour == colour; };
  } else if (variant == 1) {
    const Shape shape = rng.pick(vocab.shapes);
    item.noun_singular = shape_name(shape);
    matches = [=](const SceneObject& o) { return o.shape == shape; };
  } else if (variant == 2) {
    const int colour = rng.pick(vocab.colours);
    item.noun_singular = palette()[colour].name + " shape";
    matches = [=](const SceneObject& o) { return o.colour == colour; };
  } else {
    item.noun_singular = "shape";
    matches = [](const SceneObject&) { return true; };
  }
  item.noun_plural = plural_of(item.noun_singular);
  item.count = static_cast<int>(std::count_if(truth.objects.begin(), truth.objects.end(), matches));
  item.question = fmt::format("How many {} are there?", item.noun_plural);
  item.answer = count_sentence(item.count, item.noun_singular, item.noun_plural);
  item.short_answer = std::to_string(item.count);
  return item;
}

std::optional<VqaItem> make_colour(const ImageTruth& truth, Rng& rng) {
  if (truth.objects.empty()) return std::nullopt;
  const SceneObject& target = rng.pick(truth.objects);
  auto same_shape = [&](const SceneObject& o) { return o.shape == target.shape; };
  auto same_shape_and_place = [&](const SceneObject& o) {
    return o.shape == target.shape && o.position == target.position;
  };
  VqaItem item;
  item.type = QuestionType::kColour;
  if (std::count_if(truth.objects.begin(), truth.objects.end(), same_shape) == 1) {
    item.subject = "the " + shape_name(target.shape);
  } else if (std::count_if(truth.objects.begin(), truth.objects.end(), same_shape_and_place) == 1) {
    item.subject = fmt::format("the {} {}", shape_name(target.shape), position_with_preposition(target.position));
  } else {
    return std::nullopt;
  }
  item.colour = target.colour;
  item.position = target.position;
  item.question = fmt::format("What colour is {}?", item.subject);
  item.answer = fmt::format("{} is {}.", capitalised(item.subject), palette()[target.colour].name);
  item.short_answer = palette()[target.colour].name;
  return item;
}

std::optional<VqaItem> make_position(const ImageTruth& truth, Rng& rng) {
  if (truth.objects.empty()) return std::nullopt;
  const SceneObject& target = rng.pick(truth.objects);
  const auto twins = std::count_if(truth.objects.begin(), truth.objects.end(), [&](const SceneObject& o) {
    return o.shape == target.shape && o.colour == target.colour;
  });
  if (twins != 1) return std::nullopt;
  VqaItem item;
  item.type = QuestionType::kPosition;
  item.subject = fmt::format("the {} {}", palette()[target.colour].name, shape_name(target.shape));
  item.noun_singular = fmt::format("{} {}", palette()[target.colour].name, shape_name(target.shape));
  item.position = target.position;
  item.colour = target.colour;
  item.question = fmt::format("Where is {}?", item.subject);
  item.answer = fmt::format("{} is {}.", capitalised(item.subject), position_with_preposition(target.position));
  item.short_answer = position_phrase(target.position);
  return item;
}

std::optional<VqaItem> make_existence(const ImageTruth& truth, const Vocabulary& vocab, Rng& rng) {
  const bool want_present = rng.bernoulli(0.5);
  std::vector<int> pool;
  for (int c = 0; c < vocab.num_categories(); ++c) {
    const bool here = std::any_of(truth.objects.begin(), truth.objects.end(), [&](const SceneObject& o) {
      return vocab.category_of(o.shape, o.colour) == c;
    });
    if (here == want_present) pool.push_back(c);
  }
  if (pool.empty()) return std::nullopt;
  const int c = rng.pick(pool);
  VqaItem item;
  item.type = QuestionType::kExistence;
  item.noun_singular = vocab.name_of(c);
  item.exists = want_present;
  for (const SceneObject& o : truth.objects) {
    if (vocab.category_of(o.shape, o.colour) == c) {
      item.position = o.position;
      break;
    }
  }
  const std::string a = article_for(item.noun_singular);
  item.question = fmt::format("Is there {} {} in the image?", a, item.noun_singular);
  item.answer = want_present ? fmt::format("Yes, there is {} {} in the image.", a, item.noun_singular)
                             : fmt::format("No, there is no {} in the image.", item.noun_singular);
  item.short_answer = want_present ? "yes" : "no";
  return item;
}

std::string image_stem(const std::string& image) {
  const auto dot = image.rfind('.');
  return dot == std::string::npos ? image : image.substr(0, dot);
}

}  // namespace

std::vector<VqaItem> make_vqa_items(const ImageTruth& truth, const Vocabulary& vocab,
                                    const std::vector<QuestionType>& types, int per_image, Rng& rng, int* skipped) {
  MMR_CHECK(!types.empty(), "no question types");
  std::vector<VqaItem> items;
  std::set<std::string> asked;
  for (int slot = 0; slot < per_image; ++slot) {
    bool made = false;
    for (int attempt = 0; attempt < 20 && !made; ++attempt) {
      std::optional<VqaItem> item;
      switch (rng.pick(types)) {
        case QuestionType::kCount: item = make_count(truth, vocab, rng); break;
        case QuestionType::kColour: item = make_colour(truth, rng); break;
        case QuestionType::kPosition: item = make_position(truth, rng); break;
        case QuestionType::kExistence: item = make_existence(truth, vocab, rng); break;
      }
      if (!item || asked.count(item->question)) continue;
      asked.insert(item->question);
      item->image = truth.image;
      item->id = fmt::format("{}_q{}", image_stem(truth.image), items.size());
      items.push_back(std::move(*item));
      made = true;
    }
    if (!made && skipped) ++*skipped;
  }
  return items;
}

nlohmann::ordered_json to_llava_row(const VqaItem& item) {
  return {{"id", item.id},
          {"image", item.image},
          {"conversations",
           {{{"from", "human"}, {"value", "<image>\n" + item.question}}, {{"from", "gpt"}, {"value", item.answer}}}}};
}

nlohmann::ordered_json to_eval_row(const VqaItem& item) {
  return {{"question_id", item.id},
          {"image", item.image},
          {"text", item.question},
          {"category", question_type_name(item.type)},
          {"answer", item.answer},
          {"short_answer", item.short_answer}};
}

}  // namespace mmr::synthetic
