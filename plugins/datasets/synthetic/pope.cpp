#include "plugins/datasets/synthetic/pope.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/rng.h"

namespace mmr::synthetic {

PopeStatistics pope_statistics(const std::vector<ImageTruth>& images, const Vocabulary& vocab) {
  const auto n = static_cast<size_t>(vocab.num_categories());
  PopeStatistics stats;
  stats.frequency.assign(n, 0);
  stats.cooccurrence.assign(n, std::vector<int64_t>(n, 0));
  for (const ImageTruth& truth : images) {
    const std::vector<int> present = present_categories(truth, vocab);
    for (int a : present) {
      ++stats.frequency[a];
      for (int b : present) {
        if (a != b) ++stats.cooccurrence[a][b];
      }
    }
  }
  return stats;
}

std::vector<int> present_categories(const ImageTruth& truth, const Vocabulary& vocab) {
  std::vector<int> present;
  for (const SceneObject& o : truth.objects) {
    const int c = vocab.category_of(o.shape, o.colour);
    MMR_CHECK(c >= 0, "object outside the vocabulary in " << truth.image);
    present.push_back(c);
  }
  std::sort(present.begin(), present.end());
  present.erase(std::unique(present.begin(), present.end()), present.end());
  return present;
}

namespace {

std::vector<int> absent_categories(const std::vector<int>& present, size_t num_categories) {
  std::vector<int> absent;
  for (size_t c = 0; c < num_categories; ++c) {
    if (!std::binary_search(present.begin(), present.end(), static_cast<int>(c))) absent.push_back(static_cast<int>(c));
  }
  return absent;
}

}  // namespace

std::vector<int> popular_negatives(const std::vector<int>& present, const PopeStatistics& stats, int k) {
  std::vector<int> absent = absent_categories(present, stats.frequency.size());
  std::stable_sort(absent.begin(), absent.end(),
                   [&](int a, int b) { return stats.frequency[a] > stats.frequency[b]; });
  absent.resize(std::min(absent.size(), static_cast<size_t>(std::max(k, 0))));
  return absent;
}

std::vector<int> adversarial_negatives(const std::vector<int>& present, const PopeStatistics& stats, int k) {
  std::vector<int> absent = absent_categories(present, stats.frequency.size());
  std::vector<int64_t> score(stats.frequency.size(), 0);
  for (int c : absent) {
    for (int p : present) score[c] += stats.cooccurrence[p][c];
  }
  std::stable_sort(absent.begin(), absent.end(), [&](int a, int b) {
    if (score[a] != score[b]) return score[a] > score[b];
    return stats.frequency[a] > stats.frequency[b];
  });
  absent.resize(std::min(absent.size(), static_cast<size_t>(std::max(k, 0))));
  return absent;
}

PopeSplits make_pope(const std::vector<ImageTruth>& probed, const PopeStatistics& stats, const Vocabulary& vocab,
                     int per_image, uint64_t seed) {
  PopeSplits out;
  const size_t n = static_cast<size_t>(vocab.num_categories());
  auto emit = [&](std::vector<PopeProbe>& split, const ImageTruth& truth, const std::vector<int>& yes,
                  const std::vector<int>& no) {
    for (size_t i = 0; i < yes.size(); ++i) {
      for (const auto& [category, label] : {std::pair{yes[i], "yes"}, std::pair{no[i], "no"}}) {
        PopeProbe probe;
        probe.question_id = static_cast<int64_t>(split.size()) + 1;
        probe.image = truth.image;
        const std::string object = vocab.name_of(category);
        probe.text = fmt::format("Is there {} {} in the image?", article_for(object), object);
        probe.label = label;
        probe.category = category;
        split.push_back(std::move(probe));
      }
    }
  };
  for (size_t i = 0; i < probed.size(); ++i) {
    const ImageTruth& truth = probed[i];
    Rng rng(derive_seed(seed, kStreamPope, i));
    std::vector<int> present = present_categories(truth, vocab);
    std::vector<int> absent = absent_categories(present, n);
    const int k = static_cast<int>(std::min({static_cast<size_t>(std::max(per_image, 0)), present.size(),
                                             absent.size()}));
    if (k < per_image) ++out.images_with_fewer_probes;
    std::vector<int> yes = present;
    rng.shuffle(yes);
    yes.resize(k);
    std::vector<int> random_no = absent;
    rng.shuffle(random_no);
    random_no.resize(k);
    emit(out.random, truth, yes, random_no);
    emit(out.popular, truth, yes, popular_negatives(present, stats, k));
    emit(out.adversarial, truth, yes, adversarial_negatives(present, stats, k));
  }
  return out;
}

nlohmann::ordered_json to_json(const PopeProbe& probe) {
  nlohmann::ordered_json row;
  row["question_id"] = probe.question_id;
  row["image"] = probe.image;
  row["text"] = probe.text;
  row["label"] = probe.label;
  return row;
}

}  // namespace mmr::synthetic
