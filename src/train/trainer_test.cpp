// `moe train` end to end on a small corpus (tinyshakespeare with stories260K's 512-token vocabulary):
// validation loss falls, resume reproduces the uninterrupted run exactly, the aux loss evens the
// expert load, the event file reads back, kill -9 during training leaves a loadable checkpoint, and
// the exported GGUF gives the engine the trained model's logits.
#include "train/trainer.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "formats/npy.h"
#include "model/decoder.h"
#include "model/model.h"
#include "testdata.h"
#include "tokenizer/load.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/tb_events.h"
#include "train/train_model.h"

namespace moe::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

class Trainer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::temp_dir("trainer"));
    tokenizer_ = new std::string(test::testdata("models/stories260K.gguf"));
    const LoadedTokenizer tok = load_tokenizer(*tokenizer_);
    MixtureConfig mc;
    mc.seed = 3;
    mc.seq_len = 32;
    mc.val_fraction = 0.05;
    mc.train_tokens = 120000;
    mc.max_document_bytes = 2048;
    DataSource s;
    s.name = "books";
    s.weight = 1.0;
    s.paths.push_back({test::testdata("corpus/tinyshakespeare.txt"), SourceFormat::kText});
    mc.sources.push_back(s);
    prepare_data(mc, *tok.tokenizer, *tokenizer_, *dir_ + "/data");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete tokenizer_;
  }

  // A 2-layer llama MoE, 8 experts top-2, over the 512-token vocabulary.
  static TrainConfig config(const std::string& out, Json overrides = Json::object()) {
    return parse_train_config(config_json(out, std::move(overrides)).dump(), "test config", "");
  }
  static Json config_json(const std::string& out, Json overrides) {
    Json j = {{"model",
               {{"arch", "llama"},
                {"n_embd", 64},
                {"n_layer", 2},
                {"n_head", 4},
                {"n_head_kv", 2},
                {"n_ff", 96},
                {"n_expert", 8},
                {"n_expert_used", 2},
                {"context_length", 32}}},
              {"data", *dir_ + "/data"},
              {"tokenizer", *tokenizer_},
              {"out_dir", out},
              {"seq_len", 32},
              {"micro_batch", 4},
              {"batch", 8},
              {"steps", 40},
              {"lr", 1e-2},
              {"warmup", 4},
              {"checkpoint_every", 10},
              {"keep_checkpoints", 2},
              {"eval_every", 20},
              {"eval_batches", 4}};
    j.merge_patch(overrides);
    return j;
  }
  static TrainRunOptions quiet(int threads = 2) {
    TrainRunOptions o;
    o.threads = threads;
    o.progress = false;
    return o;
  }
  static std::vector<Json> log_of(const std::string& out) {
    std::ifstream f(out + "/train_log.jsonl");
    std::vector<Json> v;
    std::string line;
    while (std::getline(f, line)) v.push_back(Json::parse(line));
    return v;
  }

  static std::string* dir_;
  static std::string* tokenizer_;
};
std::string* Trainer::dir_ = nullptr;
std::string* Trainer::tokenizer_ = nullptr;

TEST_F(Trainer, ValidationLossFallsAndExportRunsInTheEngine) {
  const std::string out = *dir_ + "/run_basic";
  const TrainSummary s = run_training(config(out), quiet());
  ASSERT_EQ(s.last_step, 40);
  std::printf("[   INFO   ] val loss %.4f -> %.4f, %.0f tokens/s\n", s.first_val_loss, s.last_val_loss,
              s.tokens_per_s);
  EXPECT_NEAR(s.first_val_loss, std::log(512.0), 0.5);  // an untrained model is near uniform
  EXPECT_LT(s.last_val_loss, s.first_val_loss - 1.0);
  EXPECT_EQ(list_checkpoints(out + "/checkpoints"), (std::vector<int64_t>{30, 40}));  // keep 2

  // The exported model computes in the engine what the trainer computes.
  LoadedModel engine = load_model(out + "/model.gguf");
  Checkpoint ck = load_checkpoint(out + "/checkpoints/step_00000040.ckpt");
  TrainModel m(engine.model->config());
  m.values() = ck.arrays["params"];
  const std::vector<int32_t> ids = {5, 77, 300, 12, 9, 401, 33, 2};
  ThreadPool pool(2);
  const std::vector<float> ours = m.logits(ids.data(), 1, 8, pool);
  std::vector<float> ref(ours.size());
  KvCache cache = engine.model->new_cache(8);
  engine.model->forward(ids, 0, cache, true, ref.data(), pool);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(ours[i], ref[i], 1e-4 * (1 + std::fabs(ref[i]))) << i;

  // llama.cpp (the npm peer) loads the export and computes the same next-token distributions.
  const std::string src = MOE_SOURCE_DIR;
  if (!fs::exists(src + "/.cache/peers/node_modules/node-llama-cpp/package.json")) {
    std::printf(
        "[   INFO   ] llama.cpp peer not installed (scripts/install-peers.sh): its check is skipped\n");
    return;
  }
  write_npy_f32(out + "/ours.npy", {8, static_cast<int64_t>(ref.size() / 8)}, ref.data());
  std::ofstream(out + "/ids.json") << Json(ids).dump();
  std::string log;
  ASSERT_EQ(test::run_command("node " + src + "/scripts/llama-cpp-eval.mjs " + out + "/model.gguf " + out +
                                  "/ids.json " + out + "/theirs.json 2>&1",
                              &log),
            0)
      << log;
  ASSERT_EQ(test::run_command(
                "node " + src + "/scripts/compare-llama-cpp.mjs " + out + "/ours.npy " + out + "/theirs.json",
                &log),
            0)
      << log;
  const Json r = Json::parse(log);
  std::printf("[   INFO   ] llama.cpp on the exported model: max |dp| %.2e, max |dlogit| %.2e\n",
              r["max_dp_all"].get<double>(), r["max_dlogit_all"].get<double>());
  EXPECT_LT(r["max_dp_all"].get<double>(), 1e-5);
  EXPECT_TRUE(r["all_argmax_match"].get<bool>());
}

TEST_F(Trainer, ResumeReproducesTheUninterruptedRunExactly) {
  const std::string a = *dir_ + "/run_a", b = *dir_ + "/run_b";
  Json o = {{"steps", 24}, {"checkpoint_every", 6}, {"eval_every", 12}};
  const TrainSummary full = run_training(config(a, o), quiet());
  TrainRunOptions first = quiet();
  first.stop_after = 12;
  run_training(config(b, o), first);
  TrainRunOptions rest = quiet(1);  // a different thread count must not matter either
  rest.resume = true;
  const TrainSummary resumed = run_training(config(b, o), rest);
  ASSERT_EQ(resumed.first_step, 12);
  ASSERT_EQ(resumed.losses.size(), 12u);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(resumed.losses[i], full.losses[12 + i]) << "step " << 13 + i;
  EXPECT_EQ(resumed.last_val_loss, full.last_val_loss);
  const Checkpoint ca = load_checkpoint(a + "/checkpoints/step_00000024.ckpt");
  const Checkpoint cb = load_checkpoint(b + "/checkpoints/step_00000024.ckpt");
  EXPECT_TRUE(ca.arrays.at("params") == cb.arrays.at("params"));
  EXPECT_TRUE(ca.arrays.at("adam.v") == cb.arrays.at("adam.v"));
  // The resumed run's log continues the first half's without duplicates.
  const std::vector<Json> log = log_of(b);
  std::vector<int64_t> steps;
  for (const Json& r : log)
    if (r.contains("loss")) steps.push_back(r["step"]);
  ASSERT_EQ(steps.size(), 24u);
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<int64_t>(i + 1));
}

// Coefficient of variation of the per-expert load over the last steps, averaged over layers.
double load_imbalance(const std::vector<Json>& log, int last) {
  std::map<std::string, std::vector<double>> totals;
  int used = 0;
  for (auto it = log.rbegin(); it != log.rend() && used < last; ++it) {
    if (!it->contains("expert_freq")) continue;
    ++used;
    for (const auto& [layer, freq] : (*it)["expert_freq"].items()) {
      std::vector<double>& t = totals[layer];
      t.resize(freq.size(), 0.0);
      for (size_t e = 0; e < freq.size(); ++e) t[e] += freq[e].get<double>();
    }
  }
  double cv_sum = 0.0;
  for (const auto& [layer, t] : totals) {
    double mean = 0.0, var = 0.0;
    for (double x : t) mean += x / static_cast<double>(t.size());
    for (double x : t) var += (x - mean) * (x - mean) / static_cast<double>(t.size());
    cv_sum += std::sqrt(var) / mean;
  }
  return cv_sum / static_cast<double>(totals.size());
}

TEST_F(Trainer, AuxLossEvensTheExpertLoad) {
  const std::string on = *dir_ + "/run_aux", off = *dir_ + "/run_noaux";
  Json o = {{"steps", 60}, {"eval_every", 0}, {"checkpoint_every", 0}, {"lr", 2e-2}};
  Json with = o, without = o;
  with["aux_alpha"] = 0.01;
  without["balance"] = "none";
  run_training(config(on, with), quiet());
  run_training(config(off, without), quiet());
  const double cv_on = load_imbalance(log_of(on), 20), cv_off = load_imbalance(log_of(off), 20);
  std::printf("[   INFO   ] expert load imbalance (CV over the last 20 steps): aux on %.3f, off %.3f\n",
              cv_on, cv_off);
  EXPECT_LT(cv_on, 0.75 * cv_off);
}

// DeepSeek-V3's loss-free balancing on a sigmoid-routed MLA model: the selection bias alone evens the load.
TEST_F(Trainer, LossFreeBiasEvensTheExpertLoad) {
  const std::string on = *dir_ + "/run_lossfree", off = *dir_ + "/run_lossfree_off";
  Json model = {
      {"arch", "deepseek2"}, {"n_embd", 64},         {"n_layer", 2},        {"n_head", 4},
      {"n_ff", 96},          {"q_lora_rank", 0},     {"kv_lora_rank", 16},  {"qk_nope_dim", 8},
      {"rope_dim", 8},       {"head_dim_v", 8},      {"n_expert", 8},       {"n_expert_used", 2},
      {"n_ff_exp", 32},      {"n_expert_shared", 1}, {"gating", "sigmoid"}, {"expert_weights_norm", true},
      {"context_length", 32}};
  Json o = {{"model", model}, {"steps", 60}, {"eval_every", 0}, {"checkpoint_every", 0}, {"lr", 2e-2}};
  Json with = o, without = o;
  with["balance"] = "loss-free";
  with["bias_gamma"] = 0.01;
  without["balance"] = "none";
  run_training(config(on, with), quiet());
  run_training(config(off, without), quiet());
  const double cv_on = load_imbalance(log_of(on), 20), cv_off = load_imbalance(log_of(off), 20);
  std::printf(
      "[   INFO   ] expert load imbalance (CV over the last 20 steps): loss-free bias %.3f, none %.3f\n",
      cv_on, cv_off);
  EXPECT_LT(cv_on, 0.75 * cv_off);
  const Checkpoint ck = load_checkpoint(on + "/checkpoints/step_00000060.ckpt");
  ModelConfig mc = parse_train_config(config_json(on, with).dump(), "c", "").model;
  mc.n_vocab = 512;
  const TrainModel m(mc);
  const ParamInfo& bias = m.param("blk.1.exp_probs_b.bias");
  double moved = 0.0;
  for (int64_t i = 0; i < bias.size; ++i) moved += std::fabs(ck.arrays.at("params")[bias.offset + i]);
  EXPECT_GT(moved, 0.0);  // the bias really moved (it has no gradient: only the balancing moves it)
}

TEST_F(Trainer, EventFileHoldsTheLoggedValues) {
  const std::string out = *dir_ + "/run_tb";
  run_training(config(out, {{"steps", 6}, {"eval_every", 3}}), quiet());
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(out + "/tb")) files.push_back(e.path().string());
  ASSERT_EQ(files.size(), 1u);
  const std::vector<Event> events = read_events(files[0]);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  std::map<std::string, std::map<int64_t, float>> scalars;
  int histograms = 0;
  for (const Event& e : events)
    for (const SummaryValue& v : e.values) {
      if (v.simple_value) scalars[v.tag][e.step] = *v.simple_value;
      if (v.histo) {
        ++histograms;
        EXPECT_EQ(v.histo->bucket.size(), 8u) << v.tag;  // one bucket per expert
        EXPECT_EQ(v.histo->num, 8.0 * 32 * 2) << v.tag;  // batch 8 x 32 tokens x top-2
      }
    }
  for (const char* tag :
       {"train/loss", "train/aux_loss", "train/lr", "train/grad_norm", "train/loss_scale",
        "train/tokens_per_s", "val/loss", "experts/layer_0/expert_0", "experts/layer_1/expert_7"})
    EXPECT_TRUE(scalars.count(tag)) << tag;
  EXPECT_EQ(histograms, 2 * 6);
  for (const Json& r : log_of(out)) {
    if (!r.contains("loss")) continue;
    const int64_t step = r["step"];
    EXPECT_EQ(scalars["train/loss"][step], static_cast<float>(r["loss"].get<double>()));
    EXPECT_EQ(scalars["train/lr"][step], static_cast<float>(r["lr"].get<double>()));
  }
  EXPECT_EQ(scalars["val/loss"].size(), 3u);  // steps 0, 3, 6
}

TEST_F(Trainer, KillDuringTrainingLeavesALoadableCheckpoint) {
  const std::string out = *dir_ + "/run_kill";
  // Save every step so that the kill very likely lands in or near a save. The run is a separate
  // `moe train` process, killed with SIGKILL at a different moment each trial.
  const Json j =
      config_json(out, {{"steps", 400}, {"checkpoint_every", 1}, {"keep_checkpoints", 3}, {"eval_every", 0}});
  fs::create_directories(out);
  std::ofstream(out + "/run.json") << j.dump();
  const TrainConfig cfg = parse_train_config(j.dump(), "run.json", "");
  for (int trial = 0; trial < 3; ++trial) {
    const std::string moe = test::moe_binary(), conf = out + "/run.json";
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      if (trial == 0)
        execl(moe.c_str(), moe.c_str(), "train", "--config", conf.c_str(), "-q", "-t", "1",
              static_cast<char*>(nullptr));
      else
        execl(moe.c_str(), moe.c_str(), "train", "--config", conf.c_str(), "-q", "-t", "1", "--resume",
              static_cast<char*>(nullptr));
      _exit(127);
    }
    usleep(static_cast<useconds_t>(1500000 + 400000 * trial));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "trial " << trial << ": the run ended before the kill";
    const std::vector<int64_t> steps = list_checkpoints(out + "/checkpoints");
    ASSERT_FALSE(steps.empty()) << "trial " << trial;
    const Checkpoint ck = load_checkpoint(checkpoint_path(out + "/checkpoints", steps.back()));
    EXPECT_EQ(ck.arrays.count("params"), 1u);
  }
  TrainRunOptions o = quiet();
  o.resume = true;
  o.stop_after = list_checkpoints(out + "/checkpoints").back() + 1;
  EXPECT_NO_THROW(run_training(cfg, o));
}

// Every shipped run config parses, and its model is one the trainer accepts.
TEST(TrainConfigs, ShippedConfigsAreValid) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(std::string(MOE_SOURCE_DIR) + "/configs/train")) {
    if (e.path().extension() != ".json") continue;
    ++n;
    const TrainConfig cfg = load_train_config(e.path().string());
    ModelConfig c = cfg.model;
    if (c.n_vocab == 0) c.n_vocab = 512;
    EXPECT_NO_THROW(validate_config(c, e.path().string())) << e.path();
    EXPECT_GT(cfg.steps, 0) << e.path();
  }
  EXPECT_GE(n, 3);
}

TEST_F(Trainer, ConfigErrorsNameTheKey) {
  auto err = [](const std::string& json) {
    return test::error_of([&] { parse_train_config(json, "run.json", ""); });
  };
  EXPECT_NE(err(R"({"model": {}, "data": "d", "bogus": 1})").find("run.json: bogus: unknown key"),
            std::string::npos);
  EXPECT_NE(err(R"({"model": {"n_embd": "x"}, "data": "d"})").find("model.n_embd: must be an integer"),
            std::string::npos);
  EXPECT_NE(err(R"({"model": {}, "data": "d", "micro_batch": 3, "batch": 8})").find("batch"),
            std::string::npos);
  EXPECT_NE(err(R"({"model": {}, "data": "d", "precision": "fp8"})").find("precision"), std::string::npos);
  EXPECT_NE(err(R"({"model": {}, "data": "d", "balance": "loss-free"})").find("sigmoid"), std::string::npos);
  EXPECT_NE(err("{not json").find("not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace moe::train
