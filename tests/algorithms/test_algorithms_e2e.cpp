// The algorithm plugins end to end through the real `runner` binary, on the tiny HF fixture model (CPU, float32)
// with a new LoRA adapter: what each algorithm must do to the model, not just that it runs.
//   - DPO raises the chosen responses over the rejected ones (reward accuracy > 0.9, loss down); with every pair
//     flipped the policy moves the other way on the original pairs.
//   - SFT lowers the held-out loss.
//   - A DPO run killed with SIGKILL and resumed ends with the same metrics and the same adapter bytes as a run
//     never interrupted (same seed); so does a data-parallel one whose rank 1 is killed (the stage fails naming
//     the rank, the rerun resumes from rank 0's checkpoint).
//   - reference_logps writes the reference log-probs HF computed for the fixture pairs; rejection_sampling keeps
//     the best candidate; steerlm and sample run and write their artifacts.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/lib/safetensors/safetensors.h"
#include "process.h"
#include "core/store.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using mmr::Store;

namespace {

const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const fs::path kFixture = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";

// Text and image pairs whose chosen and rejected replies differ in style, so a preference is learnable.
std::string preference_rows(int n) {
  const char* images[] = {"wide.png", "tall.jpg", "small.png", "gray.png"};
  std::string out;
  for (int i = 0; i < n; ++i) {
    json row = {{"id", "p" + std::to_string(i)},
                {"chosen", {{"from", "gpt"}, {"value", "The answer is " + std::to_string(i % 5) + ", as shown."}}},
                {"rejected", {{"from", "gpt"}, {"value", "zzz qqq xxx " + std::to_string(i % 3)}}}};
    if (i % 2 == 0) {
      row["image"] = (kFixture / "images" / images[(i / 2) % 4]).string();
      row["question"] = {{"from", "human"}, {"value", "<image>\nWhat is in picture " + std::to_string(i) + "?"}};
    } else {
      row["question"] = {{"from", "human"}, {"value", "Tell me about item " + std::to_string(i) + "."}};
    }
    out += row.dump() + "\n";
  }
  return out;
}

std::string conversation_rows(int first, int n) {
  json rows = json::array();
  for (int i = first; i < first + n; ++i)
    rows.push_back({{"id", "c" + std::to_string(i)},
                    {"conversations", {{{"from", "human"}, {"value", "Count to " + std::to_string(i % 4 + 2) + "."}},
                                       {{"from", "gpt"}, {"value", "One two three four five six."}}}}});
  return rows.dump();
}

// MMR_TEST_DEVICE=cuda trains on the GPU in bf16 (the learning checks only; kill/resume equality is a CPU check).
std::string model_node(const std::string& extra = "") {
  const char* dev = std::getenv("MMR_TEST_DEVICE");
  const std::string where = dev && std::string(dev) == "cuda" ? ", device: cuda, dtype: bfloat16" : "";
  return "{plugin: llava, path: " + (kFixture / "model").string() + ", lora_r: 8, lora_alpha: 16, train_projector: true, seed: 5" +
         where + extra + "}";
}

class Algorithms : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_alg_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::vector<std::string> args(const std::string& db, std::vector<std::string> rest) {
    // Artifacts go beside the database: one folder per database keeps runs apart.
    fs::create_directories(dir_ / (db + ".d"));
    std::vector<std::string> a = {kRunner, "--results", (dir_ / (db + ".d") / db).string()};
    a.insert(a.end(), rest.begin(), rest.end());
    return a;
  }
  mmr::test::ProcessResult runner(const std::string& db, std::vector<std::string> rest) {
    return mmr::test::run(args(db, std::move(rest)));
  }
  // The final value of a metric in an experiment's (only) trial.
  double metric(const std::string& db, const std::string& experiment, const std::string& stage, const std::string& name) {
    Store s((dir_ / (db + ".d") / db).string(), Store::Mode::ReadOnly);
    const auto r = s.query("SELECT f.value FROM final_metrics f JOIN trials t ON t.id = f.trial_id JOIN experiments e "
                           "ON e.id = t.experiment_id WHERE e.name = '" + experiment + "' AND f.stage = '" + stage +
                           "' AND f.name = '" + name + "'");
    if (r.rows.empty()) ADD_FAILURE() << "no metric " << stage << "/" << name << " in " << experiment;
    return r.rows.empty() ? NAN : std::stod(r.rows[0][0].text);
  }
  std::vector<std::pair<int64_t, double>> series(const std::string& db, const std::string& name) {
    Store s((dir_ / (db + ".d") / db).string(), Store::Mode::ReadOnly);
    const auto r = s.query("SELECT m.step, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id AND m.attempt = "
                           "t.attempt WHERE m.name = '" + name + "' AND m.step IS NOT NULL ORDER BY m.step");
    std::vector<std::pair<int64_t, double>> out;
    for (const auto& row : r.rows) out.emplace_back(std::stoll(row[0].text), std::stod(row[1].text));
    return out;
  }
  std::string dpo_spec(const std::string& name, double noise, const std::string& train_extra) {
    return "name: " + name + "\nseeds: [3]\nstages:\n"
           "  - name: data\n    dataset: preference\n    file: " + (dir_ / "pairs.jsonl").string() +
           "\n    transforms: [{flip_fraction: " + std::to_string(noise) + "}]\n"
           "  - name: train\n    algorithm: dpo\n    data: ${artifact:data/rows}\n"
           "    eval_data: " + (dir_ / "pairs.jsonl").string() + "\n"
           "    model: " + model_node() + "\n"
           "    lr: 2.0e-3\n    projector_lr: 2.0e-3\n    beta: 0.5\n    batch_size: 4\n    grad_accum: 1\n"
           "    scheduler: constant\n    warmup_ratio: 0\n" + train_extra;
  }
  fs::path dir_;
};

}  // namespace

TEST_F(Algorithms, DpoLearnsThePreferenceAndFlippedPairsReverseIt) {
  write("pairs.jsonl", preference_rows(12));
  const auto clean = runner("r.db", {write("clean.yaml", dpo_spec("clean", 0.0, "    epochs: 4\n"))});
  ASSERT_EQ(clean.status, 0) << clean.err;
  const auto flipped = runner("r.db", {write("flipped.yaml", dpo_spec("flipped", 1.0, "    epochs: 4\n"))});
  ASSERT_EQ(flipped.status, 0) << flipped.err;

  EXPECT_GT(metric("r.db", "clean", "train", "train/rewards/accuracy"), 0.9);
  EXPECT_GT(metric("r.db", "clean", "train", "eval/rewards/accuracy"), 0.9);
  EXPECT_GT(metric("r.db", "clean", "train", "eval/rewards/margin"), 0.0);
  EXPECT_EQ(metric("r.db", "flipped", "train", "data/flipped_pairs"), 12);
  // Trained on swapped labels, the policy prefers the original rejected replies.
  EXPECT_LT(metric("r.db", "flipped", "train", "eval/rewards/accuracy"), 0.1);
  EXPECT_LT(metric("r.db", "flipped", "train", "eval/rewards/margin"), 0.0);

  Store s((dir_ / "r.db.d" / "r.db").string(), Store::Mode::ReadOnly);
  const auto first = s.query("SELECT m.value FROM metrics m JOIN trials t ON t.id = m.trial_id JOIN experiments e ON "
                             "e.id = t.experiment_id WHERE e.name = 'clean' AND m.name = 'train/loss' AND m.step = 1");
  ASSERT_EQ(first.rows.size(), 1u);
  // Step 1 starts at the reference (a fresh adapter is the base model): loss log 2.
  EXPECT_NEAR(std::stod(first.rows[0][0].text), std::log(2.0), 1e-4);
  EXPECT_LT(metric("r.db", "clean", "train", "train/loss"), 0.5 * std::log(2.0));
  // The adapter is a PEFT folder.
  const auto art = s.query("SELECT a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id JOIN experiments e ON "
                           "e.id = t.experiment_id WHERE e.name = 'clean' AND a.name = 'adapter'");
  ASSERT_EQ(art.rows.size(), 1u);
  EXPECT_TRUE(fs::exists(fs::path(art.rows[0][0].text) / "adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(fs::path(art.rows[0][0].text) / "adapter_config.json"));
}

// reference: live without a reference_model is the policy with its adapters off: at the first step the fresh LoRA
// (B = 0) and the untouched projector copy make policy and reference equal, so every reward is 0; after steps the
// policy moves away from it.
TEST_F(Algorithms, LiveReferenceIsThePolicyWithoutItsAdapters) {
  const char* dev = std::getenv("MMR_TEST_DEVICE");
  if (dev && std::string(dev) == "cuda")  // bf16: the trained float32 projector copy and the bf16 original differ in rounding
    GTEST_SKIP() << "an exact-equality check: float32 on the CPU only (LiveReference.* checks CUDA against HF)";
  write("pairs.jsonl", preference_rows(8));
  const auto r = runner("r.db", {write("live.yaml", dpo_spec("live", 0.0, "    reference: live\n    max_steps: 3\n"))});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto chosen = series("r.db", "train/rewards/chosen"), rejected = series("r.db", "train/rewards/rejected");
  ASSERT_EQ(chosen.size(), 3u);
  EXPECT_NEAR(chosen[0].second, 0.0, 1e-6);
  EXPECT_NEAR(rejected[0].second, 0.0, 1e-6);
  EXPECT_GT(std::abs(chosen[2].second - rejected[2].second), 1e-4) << "the policy should have moved off the reference";
}

TEST_F(Algorithms, SftLowersTheHeldOutLoss) {
  const std::string spec = "name: sft\nstages:\n  - name: train\n    algorithm: sft\n"
                           "    data: " + write("train.json", conversation_rows(0, 16)) + "\n"
                           "    eval_data: " + write("held.json", conversation_rows(100, 6)) + "\n"
                           "    model: " + model_node() + "\n"
                           "    lr: 3.0e-3\n    batch_size: 4\n    grad_accum: 1\n    epochs: 6\n";
  const auto r = runner("r.db", {write("sft.yaml", spec)});
  ASSERT_EQ(r.status, 0) << r.err;
  const double before = metric("r.db", "sft", "train", "eval/loss_before");
  const double after = metric("r.db", "sft", "train", "eval/loss");
  EXPECT_LT(after, 0.7 * before) << "before " << before << " after " << after;
}

TEST_F(Algorithms, KilledAndResumedDpoEndsLikeAnUninterruptedRun) {
  write("pairs.jsonl", preference_rows(8));
  const std::string extra = "    max_steps: 8\n    save_every: 1\n    keep_final_checkpoint: true\n";
  const std::string spec = write("dpo.yaml", dpo_spec("resume", 0.0, extra));
  const auto whole = runner("whole.db", {spec});
  ASSERT_EQ(whole.status, 0) << whole.err;

  {
    mmr::test::Process p(args("killed.db", {spec}));
    // Wait for a checkpoint past step 3, then kill without warning.
    const fs::path latest_glob = dir_ / "killed.db.d";
    bool seen = false;
    for (int i = 0; i < 2400 && !seen; ++i) {  // up to 2 minutes
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!fs::exists(latest_glob)) continue;
      try {  // the runner adds and removes checkpoint folders meanwhile
        for (const auto& e : fs::recursive_directory_iterator(latest_glob))
          if (e.path().filename() == "latest") {
            std::ifstream in(e.path());
            std::string name;
            in >> name;
            if (name >= "step-0000003") seen = true;
          }
      } catch (const fs::filesystem_error&) {
      }
    }
    ASSERT_TRUE(seen) << "no checkpoint appeared";
    p.signal(SIGKILL);
    EXPECT_EQ(p.wait().status, 128 + SIGKILL);
  }
  const auto resumed = runner("killed.db", {spec});
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming from checkpoint"), std::string::npos) << resumed.err;

  for (const char* name : {"train/loss", "train/grad_norm", "train/rewards/accuracy", "train/rewards/margin",
                           "train/rewards/chosen", "eval/rewards/accuracy", "eval/rewards/margin", "eval/loss"})
    EXPECT_DOUBLE_EQ(metric("killed.db", "resume", "train", name), metric("whole.db", "resume", "train", name)) << name;
  // The resumed attempt carries the whole loss curve, equal step by step.
  const auto a = series("whole.db", "train/loss"), b = series("killed.db", "train/loss");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_DOUBLE_EQ(a[i].second, b[i].second) << "step " << a[i].first;
  auto adapter_bytes = [&](const std::string& db) {
    Store s((dir_ / (db + ".d") / db).string(), Store::Mode::ReadOnly);
    const auto r = s.query("SELECT sha256 FROM artifacts a JOIN trials t ON t.id = a.trial_id AND a.attempt = t.attempt "
                           "WHERE a.name = 'adapter'");
    return r.rows.empty() ? std::string("<none>") : r.rows[0][0].text;
  };
  EXPECT_EQ(adapter_bytes("killed.db"), adapter_bytes("whole.db"));
}

// The pid of the data-parallel rank `rank` of a runner whose files lie under `under` (0 when there is none yet):
// a `runner _stage-rank <under>/.../request.json` process with RANK=<rank> in its environment.
pid_t find_rank(const fs::path& under, int rank) {
  auto read_nul_separated = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::vector<std::string> parts;
    for (std::string part; std::getline(in, part, '\0');) parts.push_back(part);
    return parts;
  };
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto argv = read_nul_separated(e.path() / "cmdline");
    if (argv.size() < 3 || argv[1] != "_stage-rank" || argv[2].rfind(under.string(), 0) != 0) continue;
    const auto env = read_nul_separated(e.path() / "environ");
    if (std::find(env.begin(), env.end(), "RANK=" + std::to_string(rank)) != env.end()) return std::stoi(pid);
  }
  return 0;
}

TEST_F(Algorithms, ARankKilledMidRunFailsTheStageNamingItAndTheRerunResumesFromTheCheckpoint) {
  write("pairs.jsonl", preference_rows(8));
  // MMR_TEST_RANK_DEVICES="0,1" (a two-GPU machine): one GPU per rank (NCCL) instead of two ranks on the CPU.
  const char* gpus = std::getenv("MMR_TEST_RANK_DEVICES");
  const std::string extra = "    max_steps: 8\n    save_every: 1\n    keep_final_checkpoint: true\n    batch_size: 2\n" +
                            (gpus && *gpus ? "    devices: [" + std::string(gpus) + "]\n" : std::string("    ranks: 2\n"));
  const std::string spec = write("dpo.yaml", dpo_spec("resume", 0.0, extra));
  const auto whole = runner("whole.db", {spec});
  ASSERT_EQ(whole.status, 0) << whole.err;
  {
    mmr::test::Process p(args("killed.db", {spec}));
    // Wait for a checkpoint past step 3 (written by rank 0), then SIGKILL rank 1.
    pid_t victim = 0;
    for (int i = 0; i < 2400 && !victim; ++i) {  // up to 2 minutes
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      try {  // the runner adds and removes checkpoint folders meanwhile
        for (const auto& e : fs::recursive_directory_iterator(dir_ / "killed.db.d"))
          if (e.path().filename() == "latest") {
            std::ifstream in(e.path());
            std::string name;
            in >> name;
            if (name >= "step-0000003") victim = find_rank(dir_ / "killed.db.d", 1);
          }
      } catch (const fs::filesystem_error&) {
      }
    }
    ASSERT_NE(victim, 0) << "no checkpoint or no rank 1 seen";
    ASSERT_EQ(kill(victim, SIGKILL), 0);
    const auto res = p.wait();
    EXPECT_EQ(res.status, 1) << res.err;  // the trial failed; the runner itself is fine
    EXPECT_NE(res.err.find("rank 1 of 2 ended without a result (killed by signal 9 (SIGKILL))"), std::string::npos)
        << res.err;
  }
  const auto resumed = runner("killed.db", {spec});
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("resuming from checkpoint"), std::string::npos) << resumed.err;
  // Both ranks reload the checkpoint and the per-epoch order, so the resumed run continues the uninterrupted one:
  // exactly on the CPU. Not on GPUs in bf16: there two uninterrupted runs already differ from step 3 on (measured on
  // two H200s, NCCL: losses 0.00353236427 vs 0.0035323617), while a resumed run equalled the other process's
  // uninterrupted one at every step; so there the kill, the error and the resume are what is checked.
  if (const char* dev = std::getenv("MMR_TEST_DEVICE"); dev && std::string(dev) == "cuda") return;
  for (const char* name : {"train/loss", "train/grad_norm", "train/rewards/accuracy", "eval/loss"})
    EXPECT_DOUBLE_EQ(metric("killed.db", "resume", "train", name), metric("whole.db", "resume", "train", name)) << name;
  const auto a = series("whole.db", "train/loss"), b = series("killed.db", "train/loss");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_DOUBLE_EQ(a[i].second, b[i].second) << "step " << a[i].first;
}

TEST_F(Algorithms, ReferenceLogpsStageWritesTheHfReferenceValues) {
  // The fixture's pairs with HF's reference log-probs removed; the stage must put them back.
  std::string rows;
  std::vector<json> want;
  std::ifstream in(kFixture / "expected" / "preference_logps.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json r = json::parse(line);
    want.push_back(r);
    json stripped = {{"id", r["id"]}, {"image", r["image"]}, {"question", r["question"]}, {"chosen", r["chosen"]},
                     {"rejected", r["rejected"]}};
    rows += stripped.dump() + "\n";
  }
  write("pairs.jsonl", rows);
  for (const std::string sharing : {"off", "on"}) {  // on: each pair's prompt computed once (the same values)
    SCOPED_TRACE("prefix_sharing: " + sharing);
    const std::string spec = "name: ref\nstages:\n  - name: ref\n    algorithm: reference_logps\n"
                             "    data: {plugin: preference, file: " + (dir_ / "pairs.jsonl").string() +
                             ", image_folder: " + (kFixture / "images").string() + "}\n"
                             "    model: {plugin: llava, path: " + (kFixture / "model").string() + "}\n"
                             "    batch_size: 3\n    prefix_sharing: " + sharing + "\n";
    const std::string db = "r_" + sharing + ".db";
    const auto r = runner(db, {write("ref_" + sharing + ".yaml", spec)});
    ASSERT_EQ(r.status, 0) << r.err;
    std::vector<json> got;
    for (const auto& e : fs::recursive_directory_iterator(dir_ / (db + ".d")))
      if (e.path().filename() == "rows.jsonl") {
        std::ifstream f(e.path());
        for (std::string line; std::getline(f, line);)
          if (!line.empty()) got.push_back(json::parse(line));
      }
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i]["id"], want[i]["id"]);
      for (const char* k : {"ref_win_logp", "ref_rej_logp"})
        EXPECT_NEAR(got[i][k].get<double>(), want[i][k].get<double>(), 1e-3) << k;
      for (const char* k : {"ref_win_avg_logp", "ref_rej_avg_logp"})
        EXPECT_NEAR(got[i][k].get<double>(), want[i][k].get<double>(), 1e-4) << k;
      for (const char* k : {"ref_win_per_token_logp", "ref_rej_per_token_logp"}) {
        const auto per = got[i][k].get<std::vector<double>>(), per_want = want[i][k].get<std::vector<double>>();
        ASSERT_EQ(per.size(), per_want.size()) << k;
        for (size_t t = 0; t < per.size(); ++t) EXPECT_NEAR(per[t], per_want[t], 1e-4) << k;
      }
    }
  }
}

TEST_F(Algorithms, RejectionSamplingKeepsTheBestAndSteerLmAndSampleRun) {
  auto cand = [](const std::string& text, int h, int c, int co, int cx, int v) {
    return json{{"response", text},
                {"scores", {{"Helpfulness", h}, {"Correctness", c}, {"Coherence", co}, {"Complexity", cx}, {"Verbosity", v}}}};
  };
  std::string rows;
  for (int i = 0; i < 4; ++i)
    rows += json{{"id", "q" + std::to_string(i)},
                 {"question", "Describe thing " + std::to_string(i) + "."},
                 {"candidates", {cand("bad answer", 1, 1, 1, 4, 4), cand("best answer " + std::to_string(i), 4, 3, 4, 0, 0),
                                 cand("fine answer", 3, 3, 3, 2, 2)}}}.dump() + "\n";
  const std::string data = write("cands.jsonl", rows);
  const std::string spec = "name: mix\nstages:\n"
                           "  - {name: rs, algorithm: rejection_sampling, data: " + data + ", model: " + model_node() +
                           ", max_steps: 2, batch_size: 2, grad_accum: 1}\n"
                           "  - {name: steer, algorithm: steerlm, data: " + data + ", model: " + model_node() +
                           ", max_steps: 2, batch_size: 4, grad_accum: 1}\n"
                           "  - {name: sample, algorithm: sample, data: {plugin: scored_candidates, file: " + data +
                           "}, model: {plugin: llava, path: " + (kFixture / "model").string() +
                           ", adapter: \"${artifact:steer/adapter}\", prompt_template: \"{prompt}\\nHelpfulness:4,Correctness:4,"
                           "Coherence:4,Complexity:4,Verbosity:4\"}, num_candidates: 2, max_new_tokens: 6, batch_size: 3}\n";
  const auto r = runner("r.db", {write("mix.yaml", spec)});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(metric("r.db", "mix", "rs", "data/selected"), 4);
  EXPECT_EQ(metric("r.db", "mix", "steer", "data/conditioned_examples"), 12);
  std::vector<json> selected, candidates;
  for (const auto& e : fs::recursive_directory_iterator(dir_ / "r.db.d")) {
    auto read = [&](std::vector<json>& into) {
      std::ifstream f(e.path());
      for (std::string line; std::getline(f, line);)
        if (!line.empty()) into.push_back(json::parse(line));
    };
    if (e.path().filename() == "selected.jsonl") read(selected);
    if (e.path().filename() == "candidates.jsonl") read(candidates);
    if (e.path().filename() == "steer.json") {  // the conditioning steerlm hands to evaluation
      std::ifstream f(e.path());
      EXPECT_EQ(json::parse(f)["prompt_template"],
                "{prompt}\nPlease answer the question such that your response is in the following attributes in "
                "5-point Likert scale:\nHelpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4");
    }
  }
  ASSERT_EQ(selected.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(selected[i]["conversations"][1]["value"], "best answer " + std::to_string(i)) << selected[i].dump();
  ASSERT_EQ(candidates.size(), 4u);
  for (const auto& c : candidates) EXPECT_EQ(c["candidates"].size(), 2u) << c.dump();
}

TEST_F(Algorithms, BadOptionsAreClearErrors) {
  write("pairs.jsonl", preference_rows(4));
  const auto r = runner("r.db", {write("bad.yaml", dpo_spec("bad", 0.0, "    loss: dpoo\n"))});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("loss: expected one of sigmoid"), std::string::npos) << r.err;
  const auto r2 = runner("r2.db", {write("bad2.yaml", "name: bad2\nstages:\n  - name: t\n    algorithm: dpo\n"
                                                      "    data: " + (dir_ / "pairs.jsonl").string() + "\n"
                                                      "    model: {plugin: llava, path: " + (kFixture / "model").string() + "}\n")});
  EXPECT_NE(r2.status, 0);
  EXPECT_NE(r2.err.find("reports no trainable parameters"), std::string::npos) << r2.err;
}

// A stage with `ranks: 2`: the runner starts two rank processes of itself (c10d Gloo on loopback) and records rank
// 0's metrics and adapter; they equal one process at twice the micro-batch (test_data_parallel checks the loop
// itself per step; this checks the runner's side: launch, options, artifacts, metrics).
TEST_F(Algorithms, DpoStageOnTwoRanksTrainsAsOneProcessAtTwiceTheMicroBatch) {
  write("pairs.jsonl", preference_rows(8));
  const auto two = runner("r.db", {write("two.yaml", dpo_spec("two", 0.0, "    epochs: 2\n    ranks: 2\n")),
                                   "-o", "train.batch_size=2"});
  ASSERT_EQ(two.status, 0) << two.err;
  EXPECT_NE(two.err.find("[rank 1/2]"), std::string::npos) << two.err;
  const auto one = runner("r.db", {write("one.yaml", dpo_spec("one", 0.0, "    epochs: 2\n"))});
  ASSERT_EQ(one.status, 0) << one.err;
  for (const char* m : {"train/loss", "train/grad_norm", "train/rewards/accuracy"})
    EXPECT_NEAR(metric("r.db", "two", "train", m), metric("r.db", "one", "train", m), 1e-5) << m;
  Store s((dir_ / "r.db.d" / "r.db").string(), Store::Mode::ReadOnly);
  const auto paths = s.query("SELECT a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id JOIN experiments e ON "
                             "e.id = t.experiment_id WHERE a.name = 'adapter' ORDER BY e.name");  // one, two
  ASSERT_EQ(paths.rows.size(), 2u);
  namespace st = mmr::safetensors;
  const auto a = st::SafetensorsFile::open((fs::path(paths.rows[0][0].text) / "adapter_model.safetensors").string());
  const auto b = st::SafetensorsFile::open((fs::path(paths.rows[1][0].text) / "adapter_model.safetensors").string());
  ASSERT_EQ(a.names().size(), b.names().size());
  double worst = 0;
  for (const auto& name : a.names()) {
    const std::vector<float> x = a.to_float32(name), y = b.to_float32(name);
    ASSERT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(x[i] - y[i])));
  }
  EXPECT_LE(worst, 1e-5) << "largest difference of an adapter weight";
  EXPECT_EQ(series("r.db", "train/loss").size(), 8u);  // 4 steps in each experiment, rank 0's only
}
