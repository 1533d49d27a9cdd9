// Data-parallel training (core/lib/training: the Trainer over c10d Gloo) with real processes: this test binary
// starts itself twice as rank 0 and rank 1 (torchrun's variables, a real TCPStore rendezvous on loopback) and
// compares what two ranks at micro-batch 1 train with what one process at micro-batch 2 trains: the loss and the
// gradient norm of every step and the final adapter, for DPO (a mean over pairs) and SFT (a token mean, two
// micro-batches per step, with a last micro-batch that one rank has no example of). And a rank that dies: the
// other fails with a clear error instead of hanging.
#include <unistd.h>

#include <chrono>

#include "common.h"
#include "core/lib/util/strings.h"
#include "core/spawn.h"
#include "fixture.h"
#include "preference.h"
#include "process.h"
#include "trainer.h"

using namespace llava_fixture;
using namespace mmr::train;

namespace {

// A stage context for a trainer outside the runner: metrics kept in memory, a fixed seed and folder.
class TestContext : public mmr::StageContext {
 public:
  explicit TestContext(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }
  const std::string& experiment() const override { return name_; }
  const std::string& trial_identity() const override { return name_; }
  const std::string& stage_name() const override { return name_; }
  uint64_t seed() const override { return 11; }
  const mmr::Options& options() const override { return options_; }
  const fs::path& stage_dir() const override { return dir_; }
  spdlog::logger& log() override { return *spdlog::default_logger(); }
  void log_metric(const std::string& name, double value, int64_t step) override {
    metrics[name].push_back(value);
    (void)step;
  }
  void add_artifact(const std::string&, const fs::path&) override {}
  fs::path artifact(const std::string&, const std::string&) const override { throw mmr::Error("no artifacts"); }
  std::shared_ptr<mmr::Plugin> create(mmr::PluginKind, const YAML::Node&) override { throw mmr::Error("no plugins"); }
  std::unique_ptr<mmr::ProgressSink> progress(const std::string&, int64_t) override {
    struct None : mmr::ProgressSink {
      void advance(int64_t) override {}
      void set_postfix(const std::string&) override {}
      void finish() override {}
    };
    return std::make_unique<None>();
  }
  bool stop_requested() const override { return false; }

  std::map<std::string, std::vector<double>> metrics;

 private:
  fs::path dir_;
  std::string name_ = "dp";
  mmr::Options options_{YAML::Node(YAML::NodeType::Map), "test"};
};

// The collective backend the ranks use: MMR_DP_BACKEND when set; else NCCL where the ranks have a GPU each
// (MMR_DP_DEVICES, e.g. "0,1" on a two-GPU machine) and Gloo otherwise (two ranks on one GPU: NCCL refuses that).
std::string backend() {
  if (const char* b = std::getenv("MMR_DP_BACKEND"); b && *b) return b;
  const char* devices = std::getenv("MMR_DP_DEVICES");
  return devices && *devices ? "auto" : "gloo";
}

TrainConfig config(int64_t batch_size) {
  TrainConfig c(sft_defaults());
  c.lr = 1e-3, c.projector_lr = 1e-3, c.scheduler = "constant", c.warmup_ratio = 0, c.epochs = 2;
  c.batch_size = batch_size, c.grad_accum = 1, c.gradient_checkpointing = false, c.save_every = 0;
  // A generous collective timeout: on a loaded machine (ctest -j16 beside other LibTorch tests) a rank may load
  // its model half a minute after the other. A dead peer is noticed at once anyway (its socket closes).
  c.resume = false, c.dist_timeout_s = 300;
  // The fault test shortens it: NCCL notices a dead peer only when the timeout runs out (Gloo at once).
  if (const char* t = std::getenv("MMR_DP_TIMEOUT_S")) c.dist_timeout_s = std::stoll(t);
  return c;
}

std::unique_ptr<LlavaModel> new_lora_model() {
  LlavaOptions o = base_options();
  o.lora_r = 8, o.lora_alpha = 16, o.seed = 5, o.train_projector = true;
  return std::make_unique<LlavaModel>(o);
}

std::vector<mmr::ChatSample> sft_rows() {  // five: the last micro-batch of two has one row
  std::vector<mmr::ChatSample> rows;
  for (const auto& row : read_jsonl(fixture() / "expected" / "tokenization.jsonl"))
    if (rows.size() < 5) rows.push_back(sample_of(row));
  return rows;
}

// Trains `kind` ("dpo" or "sft") at micro-batch `batch_size`; rank 0 writes the adapter to <dir>/adapter.
// `die_at`: this rank exits at that micro-batch (the fault test).
// `dist_backend`: the trainer's option ("auto": the plain path in a single process).
void train(const std::string& kind, int64_t batch_size, TestContext& ctx, int die_at = -1,
           const std::string& dist_backend = "auto") {
  auto model = new_lora_model();
  TrainConfig cfg = config(batch_size);
  cfg.dist_backend = dist_backend;
  if (kind == "sft") cfg.grad_accum = 2;  // gradients summed in the second micro-batch's backward pass only
  int calls = 0;
  auto maybe_die = [&] {
    if (++calls == die_at) _exit(3);
  };
  if (kind == "sft") {
    auto rows = sft_rows();
    Trainer t(ctx, *model, cfg);
    std::vector<mmr::EncodedSample> enc;
    for (const auto& r : rows) enc.push_back(model->encode(r));
    t.fit(static_cast<int64_t>(enc.size()), [&](const std::vector<int64_t>& idx) {
      maybe_die();
      std::vector<mmr::EncodedSample> part;
      for (int64_t i : idx) part.push_back(enc[static_cast<size_t>(i)]);
      const mmr::ModelBatch batch = model->collate(part, false);
      MicroBatch mb;
      mb.loss = model->lm_loss(batch);
      mb.weight = static_cast<double>(batch.labels.ne(mmr::kIgnoreIndex).sum().item<int64_t>());
      return mb;
    });
    return;
  }
  std::vector<PreferenceExample> pairs;
  for (const auto& row : read_jsonl(fixture() / "expected" / "preference_logps.jsonl")) {
    PreferenceExample e;
    e.chosen = keep_last_reply(model->encode(pair_sample(row, "chosen")));
    e.rejected = keep_last_reply(model->encode(pair_sample(row, "rejected")));
    e.ref_chosen = row["ref_win_logp"].get<double>();
    e.ref_rejected = row["ref_rej_logp"].get<double>();
    pairs.push_back(std::move(e));
  }
  PreferenceConfig pc;
  pc.loss.type = "sigmoid";
  pc.loss.beta = 0.1;
  Trainer t(ctx, *model, cfg);
  t.fit(static_cast<int64_t>(pairs.size()), [&](const std::vector<int64_t>& idx) {
    maybe_die();
    std::vector<const PreferenceExample*> part;
    for (int64_t i : idx) part.push_back(&pairs[static_cast<size_t>(i)]);
    PreferenceOutputs out = preference_forward(*model, part, pc);
    MicroBatch mb;
    mb.loss = out.loss.loss;
    return mb;
  });
}

std::string self_exe() { return fs::read_symlink("/proc/self/exe").string(); }

// Starts both ranks of `kind` (this binary, test DataParallelRank.Train) writing into `out`.
// `env`: more variables for both ranks. With MMR_DP_DEVICES="a,b", rank r sees only GPU r of the list.
std::vector<std::unique_ptr<mmr::test::Process>> start_ranks(const std::string& kind, const fs::path& out,
                                                             int die_at_rank1 = -1,
                                                             std::map<std::string, std::string> env = {}) {
  const std::string port = std::to_string(mmr::free_loopback_port());
  const char* devices = std::getenv("MMR_DP_DEVICES");
  std::vector<std::string> gpus;
  if (devices && *devices)
    for (auto d : mmr::python_split(devices, ',')) gpus.emplace_back(d);
  std::vector<std::unique_ptr<mmr::test::Process>> ranks;
  for (int r = 0; r < 2; ++r) {
    std::map<std::string, std::string> e = env;
    e.insert({{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port},
              {"MMR_DP_KIND", kind}, {"MMR_DP_OUT", out.string()},
              {"MMR_DP_DIE_AT", r == 1 ? std::to_string(die_at_rank1) : "-1"}});
    if (gpus.size() >= 2) e["CUDA_VISIBLE_DEVICES"] = gpus[static_cast<size_t>(r)];
    ranks.push_back(std::make_unique<mmr::test::Process>(
        std::vector<std::string>{self_exe(), "--gtest_filter=DataParallelRank.Train"}, e));
  }
  return ranks;
}

torch::Tensor adapter_tensor(const fs::path& dir, const std::string& name) {
  return expected(st::SafetensorsFile::open((dir / "adapter" / "adapter_model.safetensors").string()), name);
}

// Two trainings agree: the loss and the gradient norm of every step, and the adapter each wrote under <dir>/adapter.
void expect_same_training(const nlohmann::json& metrics, const fs::path& dir, const std::map<std::string,
                          std::vector<double>>& ref_metrics, const fs::path& ref_dir) {
  for (const char* name : {"train/loss", "train/grad_norm"}) {
    const auto& one = ref_metrics.at(name);
    const auto got = metrics.at(name).get<std::vector<double>>();
    ASSERT_EQ(got.size(), one.size()) << name;
    ASSERT_GE(one.size(), 4u);
    for (size_t s = 0; s < one.size(); ++s) EXPECT_NEAR(got[s], one[s], 1e-5 * std::abs(one[s])) << name << " step " << s + 1;
  }
  // The adapters: AdamW moves every weight by about lr per step whatever the size of its gradient, so a weight
  // whose gradient is near zero may move differently when the sum is taken in another order (measured on the
  // H200 machine's 16-core CPU: 4e-4 at most after 6 steps of lr 1e-3). Hence: every tensor within 1e-4 of
  // its norm, and no weight further apart than one step's lr.
  const auto f = st::SafetensorsFile::open((ref_dir / "adapter" / "adapter_model.safetensors").string());
  for (const auto& name : f.names()) {
    const torch::Tensor a = adapter_tensor(dir, name), b = adapter_tensor(ref_dir, name);
    EXPECT_LE((a - b).norm().item<double>(), 1e-4 * b.norm().item<double>() + 1e-7) << name;
    EXPECT_LE(max_abs_diff(a, b), 1e-3) << name;
  }
}

class DataParallel : public ::testing::TestWithParam<std::string> {};

}  // namespace

// One rank of a two-process run, started by the tests below (skipped when run on its own).
TEST(DataParallelRank, Train) {
  const char* kind = std::getenv("MMR_DP_KIND");
  if (!kind) GTEST_SKIP() << "a rank of DataParallel.*; started by those tests";
  TestContext ctx(fs::path(std::getenv("MMR_DP_OUT")) / "ranks");
  const int die_at = std::stoi(std::getenv("MMR_DP_DIE_AT"));
  try {
    train(kind, 1, ctx, die_at, backend());
  } catch (const std::exception& e) {
    std::ofstream(fs::path(std::getenv("MMR_DP_OUT")) / "error.txt") << e.what();
    throw;
  }
  if (std::string(std::getenv("RANK")) != "0") return;
  nlohmann::json m = ctx.metrics;
  std::ofstream(fs::path(std::getenv("MMR_DP_OUT")) / "metrics.json") << m.dump();
}

TEST_P(DataParallel, TwoRanksAtMicroBatchOneTrainAsOneProcessAtTwo) {
  const fs::path out = fs::temp_directory_path() / ("mmr-dp-" + GetParam() + "-" + std::to_string(getpid()));
  fs::remove_all(out);
  auto ranks = start_ranks(GetParam(), out);
  TestContext single(out / "single");
  train(GetParam(), 2, single);
  for (auto& r : ranks) {
    const auto res = r->wait();
    ASSERT_EQ(res.status, 0) << res.err.substr(res.err.size() > 3000 ? res.err.size() - 3000 : 0);
  }
  std::ifstream in(out / "metrics.json");
  expect_same_training(nlohmann::json::parse(in), out / "ranks", single.metrics, out / "single");
  fs::remove_all(out);
}

// The collective path with one rank (a group of one: NCCL where the model is on a GPU, Gloo on the CPU) trains
// exactly as the plain single-process path.
TEST_P(DataParallel, OneRankThroughTheCollectivesTrainsAsThePlainPath) {
  const fs::path out = fs::temp_directory_path() / ("mmr-dp1-" + GetParam() + "-" + std::to_string(getpid()));
  fs::remove_all(out);
  const std::string port = std::to_string(mmr::free_loopback_port());
  setenv("MASTER_PORT", port.c_str(), 1);
  TestContext grouped(out / "grouped"), plain(out / "plain");
  train(GetParam(), 2, grouped, -1, device() == "cpu" ? "gloo" : "nccl");
  unsetenv("MASTER_PORT");
  train(GetParam(), 2, plain);
  expect_same_training(grouped.metrics, out / "grouped", plain.metrics, out / "plain");
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(DpoAndSft, DataParallel, ::testing::Values("dpo", "sft"));

TEST(DataParallelFaults, ARankThatDiesFailsTheOtherWithAClearErrorInsteadOfAHang) {
  const fs::path out = fs::temp_directory_path() / ("mmr-dp-die-" + std::to_string(getpid()));
  fs::remove_all(out);
  const auto t0 = std::chrono::steady_clock::now();
  // Gloo notices the dead peer's closed socket at once; NCCL only when the collective timeout runs out.
  const bool nccl = std::getenv("MMR_DP_DEVICES") && backend() != "gloo";
  auto ranks = start_ranks("dpo", out, /*die_at_rank1=*/2, {{"MMR_DP_TIMEOUT_S", nccl ? "45" : "300"}});
  const auto r0 = ranks[0]->wait(), r1 = ranks[1]->wait();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r1.status, 3);
  EXPECT_NE(r0.status, 0);
  // Not a hang: rank 0 ends long before its 300 s collective timeout (about 2 s alone; 90 s was seen under ctest
  // -j16 on a loaded 16-core machine, mostly loading).
  EXPECT_LT(secs, 240.0) << "rank 0 hung";
  std::ifstream in(out / "error.txt");
  const std::string error((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(error.find("data-parallel all-reduce"), std::string::npos) << error << r0.err;
  fs::remove_all(out);
}

// The reducer on a group of one (Gloo, this process): buckets are summed during the backward pass as their
// gradients become final, gradients of earlier micro-batches are included, and a parameter without a gradient
// gets zeros.
TEST(GradientReducer, SumsEachBucketDuringTheBackwardPassAndIncludesEarlierMicroBatches) {
  const std::string port = std::to_string(mmr::free_loopback_port());
  setenv("MASTER_PORT", port.c_str(), 1);
  ProcessGroup group(distributed_env(), "gloo", torch::kCPU, std::chrono::seconds(30));
  unsetenv("MASTER_PORT");
  std::vector<torch::Tensor> p = {torch::full({2}, 2.0).requires_grad_(), torch::full({3}, 3.0).requires_grad_(),
                                  torch::full({4}, 4.0).requires_grad_(), torch::ones({1}).requires_grad_()};
  GradientReducer reducer(group, p, /*bucket_bytes=*/1);  // one bucket per parameter
  auto loss = [&] { return (p[0].sum() * p[1].sum() * p[2].sum()); };  // p[3] unused
  for (int step = 0; step < 2; ++step) {  // the first step learns the order, the second sums during backward
    for (auto& t : p) t.mutable_grad() = torch::Tensor();
    loss().backward();  // an earlier micro-batch
    reducer.arm();
    loss().backward();
    reducer.finish();
    EXPECT_EQ(reducer.started_in_backward(), step == 0 ? 0u : 3u) << step;  // p[3] only at finish()
  }
  // d/dp0 = sum(p1) * sum(p2) = 9 * 16, twice (two micro-batches); likewise the others.
  EXPECT_TRUE(torch::allclose(p[0].grad(), torch::full({2}, 2.0 * 9 * 16)));
  EXPECT_TRUE(torch::allclose(p[1].grad(), torch::full({3}, 2.0 * 4 * 16)));
  EXPECT_TRUE(torch::allclose(p[2].grad(), torch::full({4}, 2.0 * 4 * 9)));
  ASSERT_TRUE(p[3].grad().defined());
  EXPECT_EQ(p[3].grad().item<double>(), 0.0);
}
