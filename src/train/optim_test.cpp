#include "train/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "testdata.h"

namespace moe::train {
namespace {

// |a - b| <= 1e-6 |b| (with a tiny absolute floor for values that end up near zero).
void expect_rel(double a, double b, double rel, const std::string& what) {
  EXPECT_LE(std::fabs(a - b), rel * std::max(std::fabs(b), 1e-6)) << what << ": " << a << " vs " << b;
}

TEST(TrainOptim, AdamWHandComputedTwoSteps) {
  // Element 0 decays, element 1 does not; same gradients. Expected values from the formulas in optim.h
  // evaluated in double: step 1 p = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), and so on.
  AdamW opt(2, AdamWConfig{0.9f, 0.95f, 1e-8f, 0.1f});
  std::vector<float> p = {1.0f, 1.0f};
  const uint8_t decay[2] = {1, 0};
  std::vector<float> g = {0.5f, 0.5f};
  opt.step(p.data(), g.data(), decay, 0.1f, nullptr);
  EXPECT_EQ(opt.t(), 1);
  expect_rel(p[0], 0.890000002, 1e-6, "p0 step 1");
  expect_rel(p[1], 0.900000002, 1e-6, "p1 step 1");
  expect_rel(opt.m()[0], 0.05, 1e-6, "m step 1");
  expect_rel(opt.v()[0], 0.0125, 1e-6, "v step 1");
  g = {-0.25f, -0.25f};
  opt.step(p.data(), g.data(), decay, 0.1f, nullptr);
  EXPECT_EQ(opt.t(), 2);
  expect_rel(p[0], 0.8542630578558273, 1e-6, "p0 step 2");
  expect_rel(p[1], 0.8731630578758274, 1e-6, "p1 step 2");
  expect_rel(opt.m()[1], 0.02, 1e-6, "m step 2");
  expect_rel(opt.v()[1], 0.015, 1e-6, "v step 2");
}

TEST(TrainOptim, AdamWNullMaskDecaysEverything) {
  AdamW a(3, AdamWConfig{}), b(3, AdamWConfig{});
  std::vector<float> pa = {1.0f, -2.0f, 3.0f}, pb = pa, g = {0.1f, 0.2f, -0.3f};
  const uint8_t all[3] = {1, 1, 1};
  a.step(pa.data(), g.data(), nullptr, 1e-3f, nullptr);
  b.step(pb.data(), g.data(), all, 1e-3f, nullptr);
  EXPECT_EQ(pa, pb);
}

// The golden: torch.optim.AdamW (torch 1.13 under /usr/bin/python3) over the same inputs, two param
// groups (weight_decay = wd for the masked elements, 0 for the rest), a different lr each step.
// Values travel as hex floats, so nothing is lost in the text.
constexpr const char* kTorchScript = R"PY(
import sys
import torch
lines = open(sys.argv[1]).read().split("\n")
hdr = lines[0].split()
n, steps = int(hdr[0]), int(hdr[1])
b1, b2, eps, wd = (float.fromhex(x) for x in hdr[2:6])
rd = lambda s: [float.fromhex(x) for x in s.split()]
p0 = torch.tensor(rd(lines[1]), dtype=torch.float32)
mask = torch.tensor([int(x) for x in lines[2].split()], dtype=torch.bool)
lrs = rd(lines[3])
grads = [torch.tensor(rd(lines[4 + s]), dtype=torch.float32) for s in range(steps)]
pd = p0[mask].clone().requires_grad_(True)
pn = p0[~mask].clone().requires_grad_(True)
opt = torch.optim.AdamW([{"params": [pd], "weight_decay": wd}, {"params": [pn], "weight_decay": 0.0}],
                        lr=lrs[0], betas=(b1, b2), eps=eps)
for s in range(steps):
    for grp in opt.param_groups:
        grp["lr"] = lrs[s]
    pd.grad = grads[s][mask].clone()
    pn.grad = grads[s][~mask].clone()
    opt.step()
def merged(a, b):
    out = torch.empty(n, dtype=torch.float32)
    out[mask] = a.detach()
    out[~mask] = b.detach()
    return " ".join(float(x).hex() for x in out.tolist())
print(merged(pd, pn))
print(merged(opt.state[pd]["exp_avg"], opt.state[pn]["exp_avg"]))
print(merged(opt.state[pd]["exp_avg_sq"], opt.state[pn]["exp_avg_sq"]))
)PY";

std::string hex(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", x);
  return buf;
}

std::vector<float> parse_hex_line(const std::string& line) {
  std::istringstream is(line);
  std::vector<float> out;
  std::string tok;
  while (is >> tok) out.push_back(static_cast<float>(std::strtod(tok.c_str(), nullptr)));
  return out;
}

TEST(TrainOptim, AdamWMatchesPyTorch) {
  std::string probe;
  if (test::run_command("/usr/bin/python3 -c 'import torch' 2>&1", &probe) != 0)
    GTEST_SKIP() << "/usr/bin/python3 has no torch: " << probe;
  const int64_t n = 64;
  const int steps = 3;
  const AdamWConfig cfg{0.9f, 0.95f, 1e-8f, 0.1f};
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> mag(0.5f, 1.5f), grad(-1.0f, 1.0f);
  std::vector<float> p(n);
  std::vector<uint8_t> mask(n);
  for (int64_t i = 0; i < n; ++i) {
    p[i] = (i % 2 ? -1.0f : 1.0f) * mag(rng);
    mask[i] = (i % 3) != 0;
  }
  const float lrs[steps] = {1e-2f, 3e-2f, 5e-3f};
  std::vector<std::vector<float>> grads(steps, std::vector<float>(n));
  for (auto& gs : grads)
    for (float& x : gs) x = grad(rng) * (rng() % 4 == 0 ? 1e-3f : 1.0f);  // some tiny gradients too

  const std::string dir = test::temp_dir("adamw-golden");
  {
    std::ofstream in(dir + "/in.txt");
    in << n << " " << steps << " " << hex(cfg.beta1) << " " << hex(cfg.beta2) << " " << hex(cfg.eps) << " "
       << hex(cfg.weight_decay) << "\n";
    for (float x : p) in << hex(x) << " ";
    in << "\n";
    for (uint8_t b : mask) in << int(b) << " ";
    in << "\n";
    for (float lr : lrs) in << hex(lr) << " ";
    in << "\n";
    for (const auto& gs : grads) {
      for (float x : gs) in << hex(x) << " ";
      in << "\n";
    }
    std::ofstream(dir + "/adamw.py") << kTorchScript;
  }
  std::string out;
  const int rc = test::run_command("/usr/bin/python3 " + dir + "/adamw.py " + dir + "/in.txt 2>&1", &out);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream lines(out);
  std::string lp, lm, lv;
  std::getline(lines, lp);
  std::getline(lines, lm);
  std::getline(lines, lv);
  const std::vector<float> tp = parse_hex_line(lp), tm = parse_hex_line(lm), tv = parse_hex_line(lv);
  ASSERT_EQ(tp.size(), static_cast<size_t>(n)) << out;
  ASSERT_EQ(tm.size(), static_cast<size_t>(n)) << out;
  ASSERT_EQ(tv.size(), static_cast<size_t>(n)) << out;

  AdamW opt(n, cfg);
  for (int s = 0; s < steps; ++s) opt.step(p.data(), grads[s].data(), mask.data(), lrs[s], nullptr);
  for (int64_t i = 0; i < n; ++i) {
    expect_rel(p[i], tp[i], 1e-6, "param " + std::to_string(i));
    expect_rel(opt.m()[i], tm[i], 1e-6, "exp_avg " + std::to_string(i));
    expect_rel(opt.v()[i], tv[i], 1e-6, "exp_avg_sq " + std::to_string(i));
  }
}

TEST(TrainOptim, LrSchedule) {
  const float hi = 1e-3f, lo = 1e-4f;
  // Warmup: (s + 1) / warmup of the peak, the peak itself at the first step after warmup.
  EXPECT_FLOAT_EQ(lr_at(0, hi, lo, 10, 110), hi * 0.1f);
  EXPECT_FLOAT_EQ(lr_at(4, hi, lo, 10, 110), hi * 0.5f);
  EXPECT_FLOAT_EQ(lr_at(9, hi, lo, 10, 110), hi);
  EXPECT_FLOAT_EQ(lr_at(10, hi, lo, 10, 110), hi);
  // Cosine from step 10 (peak) to step 109 (lr_min): the middle (progress 0.5) is the average.
  const float mid = lr_at(10 + 99 / 2, hi, lo, 10, 110);
  const double progress = 49.0 / 99.0;
  EXPECT_NEAR(mid, lo + (hi - lo) * 0.5 * (1 + std::cos(std::numbers::pi * progress)), 1e-9);
  EXPECT_NEAR(lr_at(10, hi, lo, 10, 111), hi, 1e-9);
  EXPECT_NEAR(lr_at(60, hi, lo, 10, 111), (hi + lo) / 2, 1e-9);  // exactly half way: 50 of 100
  // End and beyond.
  EXPECT_FLOAT_EQ(lr_at(109, hi, lo, 10, 110), lo);
  EXPECT_FLOAT_EQ(lr_at(110, hi, lo, 10, 110), lo);
  EXPECT_FLOAT_EQ(lr_at(1000000, hi, lo, 10, 110), lo);
  // Monotone decay after warmup.
  for (int64_t s = 10; s < 110; ++s) EXPECT_GE(lr_at(s, hi, lo, 10, 110), lr_at(s + 1, hi, lo, 10, 110));
  // No warmup: the peak at step 0.
  EXPECT_FLOAT_EQ(lr_at(0, hi, lo, 0, 100), hi);
}

TEST(TrainOptim, GlobalNormAndClipping) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(global_norm(g.data(), 2, nullptr), 5.0);
  EXPECT_EQ(global_norm(g.data(), 0, nullptr), 0.0);
  // No clipping under the limit or with max_norm <= 0.
  EXPECT_EQ(clip_by_global_norm(g.data(), 2, 5.0, 10.0f), 1.0f);
  EXPECT_EQ(clip_by_global_norm(g.data(), 2, 5.0, 0.0f), 1.0f);
  EXPECT_EQ(g[0], 3.0f);
  const float f = clip_by_global_norm(g.data(), 2, 5.0, 1.0f);
  EXPECT_FLOAT_EQ(f, 0.2f);
  EXPECT_FLOAT_EQ(g[0], 0.6f);
  EXPECT_FLOAT_EQ(g[1], 0.8f);
  EXPECT_NEAR(global_norm(g.data(), 2, nullptr), 1.0, 1e-6);
  // Not finite.
  g = {1.0f, std::numeric_limits<float>::infinity()};
  EXPECT_TRUE(std::isinf(global_norm(g.data(), 2, nullptr)));
  g = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_TRUE(std::isnan(global_norm(g.data(), 2, nullptr)));
  // Large values do not overflow (squares summed in double).
  g = {3e38f, 3e38f};
  EXPECT_NEAR(global_norm(g.data(), 2, nullptr), 3e38 * std::sqrt(2.0), 1e31);
}

TEST(TrainOptim, LossScaler) {
  LossScaler s(1024.0f, 3);
  EXPECT_FALSE(s.update(false));  // overflow: halve, skip
  EXPECT_EQ(s.scale(), 512.0f);
  EXPECT_TRUE(s.update(true));
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 512.0f);
  EXPECT_EQ(s.good_steps(), 2);
  EXPECT_FALSE(s.update(false));  // an overflow resets the run of good steps
  EXPECT_EQ(s.scale(), 256.0f);
  EXPECT_EQ(s.good_steps(), 0);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 256.0f);
  EXPECT_TRUE(s.update(true));  // third good step in a row: double
  EXPECT_EQ(s.scale(), 512.0f);
  EXPECT_EQ(s.good_steps(), 0);
  s.restore(8.0f, 2);
  EXPECT_TRUE(s.update(true));
  EXPECT_EQ(s.scale(), 16.0f);
}

TEST(TrainOptim, ThreadCountIndependent) {
  const int64_t n = 300001;  // many blocks and a ragged end
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> p(n), g(n);
  std::vector<uint8_t> mask(n);
  for (int64_t i = 0; i < n; ++i) {
    p[i] = d(rng);
    g[i] = d(rng) * (i % 7 == 0 ? 1e4f : 1.0f);
    mask[i] = i % 5 != 0;
  }
  ThreadPool one(1), two(2), three(3);
  const double n1 = global_norm(g.data(), n, &one), n2 = global_norm(g.data(), n, &two);
  const double n3 = global_norm(g.data(), n, &three), n0 = global_norm(g.data(), n, nullptr);
  EXPECT_EQ(std::memcmp(&n1, &n2, sizeof n1), 0);
  EXPECT_EQ(std::memcmp(&n1, &n3, sizeof n1), 0);
  EXPECT_EQ(std::memcmp(&n1, &n0, sizeof n1), 0);
  std::vector<float> p1 = p, p2 = p;
  AdamW a1(n, AdamWConfig{}), a2(n, AdamWConfig{});
  for (int s = 0; s < 3; ++s) {
    a1.step(p1.data(), g.data(), mask.data(), 1e-3f, &one);
    a2.step(p2.data(), g.data(), mask.data(), 1e-3f, &two);
  }
  EXPECT_EQ(std::memcmp(p1.data(), p2.data(), n * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a1.m().data(), a2.m().data(), n * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a1.v().data(), a2.v().data(), n * sizeof(float)), 0);
}

}  // namespace
}  // namespace moe::train
