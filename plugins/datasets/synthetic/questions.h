// Visual questions about one scene, answered exactly from its ground truth.
//
// Four kinds, each only asked when the ground truth makes the answer unambiguous:
//   count      "How many red circles are there?"  (also by shape only, colour only, all shapes, and absent
//              categories, whose answer is "There are no ...")
//   colour     "What colour is the triangle?"      the target must be the only triangle, or else the only triangle
//              in its position bucket ("What colour is the triangle at the top left?"); otherwise not asked
//   position   "Where is the blue square?"         the (colour, shape) must occur exactly once
//   existence  "Is there a green star in the image?"  present or absent with probability 1/2 each
// Answers are one sentence ("There are 3 red circles.") with a short form beside them ("3") for scoring.
// Questions never carry the "<image>" token; the LLaVA row writer adds it.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/rng.h"
#include "plugins/datasets/synthetic/scene.h"

namespace mmr::synthetic {

enum class QuestionType { kCount, kColour, kPosition, kExistence };

const std::vector<QuestionType>& all_question_types();
const std::string& question_type_name(QuestionType type);  // "count", "colour", "position", "existence"
QuestionType question_type_from_name(const std::string& name, const std::string& key);

struct VqaItem {
  std::string id;     // "<image stem>_q<k>"
  std::string image;  // relative to the images folder
  QuestionType type = QuestionType::kCount;
  std::string question;      // "How many red circles are there?"
  std::string answer;        // "There are 3 red circles."
  std::string short_answer;  // "3", "red", "top left", "yes"

  // What the question is about, so candidates can be worded around it.
  std::string subject;        // colour/position: "the triangle", "the blue square"
  std::string noun_singular;  // count/existence: "red circle", "circle", "red shape", "shape"
  std::string noun_plural;    // count: "red circles"
  int count = 0;              // count: the true count
  int colour = -1;            // colour: the true colour (palette index)
  Position position;          // position: the true bucket; existence (yes): bucket of one instance
  bool exists = false;        // existence: the true answer
};

// Pluralises the shape nouns ("cross" -> "crosses", else + "s").
std::string plural_of(const std::string& noun);
// "at the top left" / "in the centre".
std::string position_with_preposition(Position p);
// "The" + rest for a sentence start ("the triangle" -> "The triangle").
std::string capitalised(const std::string& text);

// Up to `per_image` distinct questions of the given types; each slot tries up to 20 draws (type, target) and is
// skipped, and counted in *skipped, when none is askable or new.
std::vector<VqaItem> make_vqa_items(const ImageTruth& truth, const Vocabulary& vocab,
                                    const std::vector<QuestionType>& types, int per_image, Rng& rng, int* skipped);

// LLaVA conversation row: {"id", "image", "conversations": [{"from": "human", "value": "<image>\n<q>"},
// {"from": "gpt", "value": <answer>}]}.
nlohmann::ordered_json to_llava_row(const VqaItem& item);
// Evaluation row, like LLaVA-Bench's questions.jsonl plus the answers:
// {"question_id", "image", "text", "category", "answer", "short_answer"}.
nlohmann::ordered_json to_eval_row(const VqaItem& item);

}  // namespace mmr::synthetic
