// TrainModel against two references: the inference engine (same logits from the same GGUF weights)
// and PyTorch (scripts/train_reference.py, run with Debian's python3-torch: loss, aux loss, every
// gradient and one AdamW step), for GQA and MLA models with softmax and sigmoid routers.
#include "train/train_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "formats/npy.h"
#include "model/presets.h"
#include "testdata.h"
#include "train/optim.h"

namespace moe::train {
namespace {

// A reduced preset without long-context RoPE scaling (training runs at the base context).
ModelConfig plain(const std::string& preset) {
  ModelConfig c = reduced(find_preset(preset).config);
  c.n_vocab = 300;
  c.rope.freq_scale = 1.0f;
  c.rope.ext_factor = 0.0f;
  c.rope.freq_factors.clear();
  c.kq_scale = 0.0f;
  c.n_ctx_train = 64;
  return c;
}

struct Variant {
  const char* name;
  ModelConfig c;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  ModelConfig mix = plain("seed-moe");  // llama MoE, softmax top-2 as scored, GQA 4/4
  mix.n_head_kv = 2;                    // real GQA
  v.push_back({"llama-moe-gqa-softmax", mix});
  ModelConfig mixn = mix;
  mixn.expert_weights_norm = true;
  mixn.n_layer = 1;
  v.push_back({"llama-moe-renormalised", mixn});
  v.push_back({"mla-softmax-shared", plain("deepseek-v2-lite")});   // MLA without q-lora, 2 shared
  v.push_back({"mla-sigmoid-groups-qlora", plain("deepseek-r1")});  // q-lora, sigmoid+bias, groups, scale
  return v;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
  return t;
}

// Random init plus a random selection bias, so sigmoid routing exercises it.
void init(TrainModel& m, uint64_t seed) {
  m.init_random(seed, 0.08f);
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (const ParamInfo& p : m.params()) {
    if (p.name.ends_with("exp_probs_b.bias") || p.name.find("norm") != std::string::npos)
      for (int64_t i = 0; i < p.size; ++i) m.values()[p.offset + i] += u(rng);
  }
}

double rel_err(const float* a, const float* b, int64_t n) {
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den == 0.0 ? std::sqrt(num) : std::sqrt(num / den);
}

class TrainModelVariants : public ::testing::TestWithParam<size_t> {};

// The training forward computes what inference computes: same weights (through GGUF, MLA in the newer
// split layout), same logits at every position.
TEST_P(TrainModelVariants, LogitsMatchInferenceEngine) {
  const Variant v = variants()[GetParam()];
  const std::string dir = test::temp_dir("train_fwd");
  const std::string path = dir + "/m.gguf";
  RandomModelOptions ro;
  ro.seed = 7;
  ro.synthetic_vocab = true;
  write_random_model(v.c, ro, path);
  LoadedModel engine = load_model(path);
  TrainModel m(engine.model->config());
  m.load_gguf(path);
  const int64_t T = 12;
  const std::vector<int32_t> tokens = random_tokens(T, v.c.n_vocab, 3);
  ThreadPool pool(2);
  const std::vector<float> ours = m.logits(tokens.data(), 1, T, pool);
  std::vector<float> ref(static_cast<size_t>(T * v.c.n_vocab));
  KvCache cache = engine.model->new_cache(T);
  engine.model->forward(tokens, 0, cache, true, ref.data(), pool);
  double max_diff = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(ours[i] - ref[i])));
    max_ref = std::max(max_ref, static_cast<double>(std::fabs(ref[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_ref)) << v.name;
  std::filesystem::remove_all(dir);
}

// Loss, aux loss, every gradient and one AdamW step (with clipping) against PyTorch.
TEST_P(TrainModelVariants, GradientsAndAdamWStepMatchPyTorch) {
  const Variant v = variants()[GetParam()];
  std::string out;
  ASSERT_EQ(test::run_command("/usr/bin/python3 -c 'import torch, numpy' 2>&1", &out), 0)
      << "PyTorch is the gradient oracle: apt-get install python3-torch (scripts/install-deps.sh does)\n"
      << out;
  const std::string dir = test::temp_dir("train_grad");
  TrainModel m(v.c);
  init(m, 11);
  const int64_t B = 2, T = 9;
  const std::vector<int32_t> tokens = random_tokens(B * (T + 1), v.c.n_vocab, 5);
  const float alpha = 0.05f, lr = 1e-2f, max_norm = 0.5f;
  const AdamWConfig acfg{0.9f, 0.95f, 1e-8f, 0.1f};
  const ModelConfig& c = v.c;
  nlohmann::json j = {{"arch", c.arch},
                      {"n_vocab", c.n_vocab},
                      {"n_embd", c.n_embd},
                      {"n_layer", c.n_layer},
                      {"n_head", c.n_head},
                      {"n_head_kv", c.n_head_kv},
                      {"head_dim_k", c.head_dim_k},
                      {"head_dim_v", c.head_dim_v},
                      {"n_ff", c.n_ff},
                      {"rms_eps", c.rms_eps},
                      {"rope_n_rot", c.rope.n_rot},
                      {"rope_freq_base", c.rope.freq_base},
                      {"kq_scale", c.kq_scale},
                      {"n_expert", c.n_expert},
                      {"n_expert_used", c.n_expert_used},
                      {"n_expert_shared", c.n_expert_shared},
                      {"n_ff_exp", c.n_ff_exp},
                      {"n_layer_dense_lead", c.n_layer_dense_lead},
                      {"gating_sigmoid", c.gating_sigmoid},
                      {"expert_weights_norm", c.expert_weights_norm},
                      {"expert_weights_scale", c.expert_weights_scale},
                      {"n_expert_groups", c.n_expert_groups},
                      {"n_group_used", c.n_group_used},
                      {"q_lora_rank", c.q_lora_rank},
                      {"kv_lora_rank", c.kv_lora_rank},
                      {"qk_nope_dim", c.qk_nope_dim},
                      {"aux_alpha", alpha},
                      {"lr", lr},
                      {"weight_decay", acfg.weight_decay},
                      {"beta1", acfg.beta1},
                      {"beta2", acfg.beta2},
                      {"eps", acfg.eps},
                      {"max_grad_norm", max_norm},
                      {"precision", "f32"}};
  std::ofstream(dir + "/config.json") << j.dump(1);
  std::vector<float> tok_f(tokens.begin(), tokens.end());
  {
    // tokens.npy must be int32: write the header by hand.
    std::ofstream f(dir + "/tokens.npy", std::ios::binary);
    std::string header = "{'descr': '<i4', 'fortran_order': False, 'shape': (" + std::to_string(B) + ", " +
                         std::to_string(T + 1) + "), }";
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    const uint16_t hlen = static_cast<uint16_t>(header.size());
    f.write("\x93NUMPY\x01\x00", 8);
    f.write(reinterpret_cast<const char*>(&hlen), 2);
    f << header;
    f.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size() * 4));
  }
  for (const ParamInfo& p : m.params()) {
    std::vector<int64_t> shape(p.ne.rbegin(), p.ne.rend());
    write_npy_f32(dir + "/param." + p.name + ".npy", shape, m.values().data() + p.offset);
  }
  ASSERT_EQ(test::run_command("/usr/bin/python3 " + std::string(MOE_SOURCE_DIR) +
                                  "/scripts/train_reference.py " + dir + " 2>&1",
                              &out),
            0)
      << out;
  const auto ref = nlohmann::json::parse(test::read_file(dir + "/result.json"));

  ThreadPool pool(2);
  TrainOptions opt;
  opt.aux_alpha = alpha;
  m.zero_grads();
  const StepResult r = m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1.0f, pool);
  EXPECT_NEAR(r.loss, ref["loss"].get<double>(), 1e-5 * std::fabs(ref["loss"].get<double>())) << v.name;
  EXPECT_NEAR(r.aux, ref["aux"].get<double>(), 1e-5 * std::max(1e-3, std::fabs(ref["aux"].get<double>())))
      << v.name;
  double worst = 0.0;
  std::string worst_name;
  for (const ParamInfo& p : m.params()) {
    const NpyArray g = read_npy_f32(dir + "/grad." + p.name + ".npy");
    ASSERT_EQ(static_cast<int64_t>(g.data.size()), p.size) << p.name;
    const double e = rel_err(m.grads().data() + p.offset, g.data.data(), p.size);
    if (e > worst) worst = e, worst_name = p.name;
    EXPECT_LT(e, 1e-4) << v.name << ": gradient of " << p.name;
  }
  std::printf("[   INFO   ] %s: loss %.6f aux %.6f, worst gradient relative error %.2e (%s)\n", v.name,
              r.loss, r.aux, worst, worst_name.c_str());

  const int64_t n = static_cast<int64_t>(m.values().size());
  const double norm = global_norm(m.grads().data(), n, &pool);
  EXPECT_NEAR(norm, ref["grad_norm"].get<double>(), 1e-5 * ref["grad_norm"].get<double>());
  clip_by_global_norm(m.grads().data(), n, norm, max_norm);
  AdamW adam(n, acfg);
  const std::vector<uint8_t> decay = m.decay_mask();
  const std::vector<float> before = m.values();
  adam.step(m.values().data(), m.grads().data(), decay.data(), lr, &pool);
  // The first Adam step moves a weight by about lr * g / (|g| + eps): where a gradient is within a few
  // eps of 0, f32 rounding of g (vs PyTorch's f64) changes that element's step. So compare each tensor's
  // weights (relative 1e-4, the bound) and its whole update (relative L2 error 1e-3), not each
  // element's step.
  double worst_w = 0.0, worst_u = 0.0;
  for (const ParamInfo& p : m.params()) {
    const NpyArray w = read_npy_f32(dir + "/step." + p.name + ".npy");
    ASSERT_EQ(static_cast<int64_t>(w.data.size()), p.size) << p.name;
    const double ew = rel_err(m.values().data() + p.offset, w.data.data(), p.size);
    std::vector<float> ours(static_cast<size_t>(p.size)), theirs(static_cast<size_t>(p.size));
    for (int64_t i = 0; i < p.size; ++i) {
      ours[i] = m.values()[p.offset + i] - before[p.offset + i];
      theirs[i] = w.data[i] - before[p.offset + i];
    }
    const double eu = rel_err(ours.data(), theirs.data(), p.size);
    worst_w = std::max(worst_w, ew);
    worst_u = std::max(worst_u, eu);
    EXPECT_LT(ew, 1e-4) << v.name << ": weights after the AdamW step, " << p.name;
    EXPECT_LT(eu, 1e-3) << v.name << ": AdamW update of " << p.name;
  }
  std::printf(
      "[   INFO   ] %s: after one AdamW step, weights within %.2e, updates within %.2e (relative L2)\n",
      v.name, worst_w, worst_u);
  std::filesystem::remove_all(dir);
}

// Recomputing each block in the backward gives bit-identical gradients and holds fewer bytes.
TEST_P(TrainModelVariants, ActivationCheckpointingIsExactAndSmaller) {
  const Variant v = variants()[GetParam()];
  TrainModel m(v.c);
  init(m, 3);
  const int64_t B = 2, T = 16;
  const std::vector<int32_t> tokens = random_tokens(B * (T + 1), v.c.n_vocab, 9);
  ThreadPool pool(2);
  TrainOptions opt;
  m.zero_grads();
  const StepResult full = m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1.0f, pool);
  const std::vector<float> g_full = m.grads();
  opt.checkpoint_activations = true;
  m.zero_grads();
  const StepResult ckpt = m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1.0f, pool);
  EXPECT_EQ(full.loss, ckpt.loss);
  EXPECT_TRUE(g_full == m.grads()) << v.name;
  if (v.c.n_layer >= 2) {  // with one layer the recomputed block is all there is to hold
    EXPECT_LT(ckpt.activation_bytes, full.activation_bytes) << v.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, TrainModelVariants, ::testing::Range<size_t>(0, 4));

// Central differences of the loss on a few coordinates of every tensor (a check independent of PyTorch).
TEST(TrainModel, GradientMatchesFiniteDifferences) {
  ModelConfig c = plain("deepseek-r1");
  c.n_layer = 2;
  TrainModel m(c);
  init(m, 21);
  const int64_t B = 1, T = 6;
  const std::vector<int32_t> tokens = random_tokens(B * (T + 1), c.n_vocab, 2);
  ThreadPool pool(1);
  TrainOptions opt;
  opt.aux_alpha = 0.0f;  // f_i jumps when a selection flips; keep the loss smooth
  m.zero_grads();
  m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1.0f, pool);
  std::mt19937_64 rng(4);
  int checked = 0;
  for (const ParamInfo& p : m.params()) {
    if (p.name.ends_with("exp_probs_b.bias")) continue;  // selection only: no gradient by design
    for (int k = 0; k < 2; ++k) {
      const int64_t i = p.offset + static_cast<int64_t>(rng() % static_cast<uint64_t>(p.size));
      const float saved = m.values()[i];
      const float h = 1e-2f * std::max(0.1f, std::fabs(saved));
      m.values()[i] = saved + h;
      const double lp = m.evaluate(tokens.data(), B, T, opt, pool).loss;
      m.values()[i] = saved - h;
      const double lm = m.evaluate(tokens.data(), B, T, opt, pool).loss;
      m.values()[i] = saved;
      const double fd = (lp - lm) / (2.0 * h);
      const double g = m.grads()[i];
      EXPECT_NEAR(g, fd, 0.05 * std::fabs(fd) + 2e-4) << p.name << "[" << i - p.offset << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 20);
}

TEST(TrainModel, ReducedPrecisionStaysCloseAndLossScalingIsExact) {
  ModelConfig c = plain("seed-moe");
  TrainModel m(c);
  init(m, 5);
  const int64_t B = 2, T = 8;
  const std::vector<int32_t> tokens = random_tokens(B * (T + 1), c.n_vocab, 1);
  ThreadPool pool(2);
  TrainOptions opt;
  const double f32 = m.evaluate(tokens.data(), B, T, opt, pool).loss;
  opt.precision = Precision::kBf16;
  const double bf16 = m.evaluate(tokens.data(), B, T, opt, pool).loss;
  opt.precision = Precision::kF16;
  const double f16 = m.evaluate(tokens.data(), B, T, opt, pool).loss;
  EXPECT_NE(f32, bf16);  // the rounding is really applied
  EXPECT_NEAR(bf16, f32, 2e-2 * f32);
  EXPECT_NEAR(f16, f32, 2e-3 * f32);
  // fp16 with a huge loss scale overflows the rounded gradients: the step must see non-finite values.
  m.zero_grads();
  m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1e30f, pool);
  EXPECT_FALSE(std::isfinite(global_norm(m.grads().data(), static_cast<int64_t>(m.grads().size()), &pool)));
  m.zero_grads();
  m.forward_backward(tokens.data(), B, T, opt, 1.0f, 1024.0f, pool);
  EXPECT_TRUE(std::isfinite(global_norm(m.grads().data(), static_cast<int64_t>(m.grads().size()), &pool)));
}

TEST(TrainModel, RejectsWhatItCannotTrain) {
  ModelConfig q = plain("r1-distill-qwen-1.5b");
  EXPECT_NE(test::error_of([&] { TrainModel m(q); }).find("qwen2"), std::string::npos);
  ModelConfig y = reduced(find_preset("deepseek-r1").config);  // YaRN
  EXPECT_NE(test::error_of([&] { TrainModel m(y); }).find("RoPE scaling"), std::string::npos);
  TrainModel m(plain("seed-moe"));
  std::vector<int32_t> bad = {1, 2, 100000, 3};
  ThreadPool pool(1);
  EXPECT_NE(test::error_of([&] {
              m.evaluate(bad.data(), 1, 3, TrainOptions{}, pool);
            }).find("outside the vocabulary"),
            std::string::npos);
}

}  // namespace
}  // namespace moe::train
