// Every backward against central finite differences of its forward (the loss L = sum(dy * y) is
// accumulated in double; with eps ~1e-2 on smooth f32 forwards the FD error stays well under the
// tolerance), plus the properties the training loop relies on: causality, GQA/MLA layouts, routing
// identical to inference, rope matching the inference kernel, thread-count independence.
#include "train/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/moe_ffn.h"

namespace moe::train {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Central differences of loss() in each element of x (perturbed in place, then restored). The
// step actually taken (after f32 rounding) is the divisor.
std::vector<double> numeric_grad(std::vector<float>& x, const std::function<double()>& loss,
                                 float eps = 1e-2f) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    const float hi = x0 + eps, lo = x0 - eps;
    x[i] = hi;
    const double lp = loss();
    x[i] = lo;
    const double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (static_cast<double>(hi) - lo);
  }
  return g;
}

// analytic ~ numeric within atol + rtol * |numeric|; also requires some gradient to be non-zero,
// so a backward that adds nothing cannot pass.
void expect_grad(const std::vector<float>& analytic, const std::vector<double>& numeric, const char* what,
                 double atol = 2e-3, double rtol = 1e-2) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  int bad = 0;
  double max_abs = 0.0;
  for (size_t i = 0; i < analytic.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(numeric[i]));
    if (std::abs(analytic[i] - numeric[i]) > atol + rtol * std::abs(numeric[i]) && ++bad <= 5)
      ADD_FAILURE() << what << "[" << i << "]: backward " << analytic[i] << " vs finite differences "
                    << numeric[i];
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << analytic.size() << " elements off";
  EXPECT_GT(max_abs, 10 * atol) << what << ": gradient too small to test";
}

// ---- linear ----------------------------------------------------------------------------------

TEST(TrainOps, LinearForwardMatchesNaiveAndBackwardMatchesFiniteDifferences) {
  const int64_t n = 5, in = 7, out = 3;
  auto x = randn(n * in, 1), w = randn(out * in, 2), dy = randn(n * out, 3);
  std::vector<float> y(n * out);
  linear_forward(x.data(), w.data(), y.data(), n, in, out);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (int64_t j = 0; j < in; ++j) s += static_cast<double>(x[i * in + j]) * w[o * in + j];
      EXPECT_NEAR(y[i * out + o], s, 1e-5) << i << "," << o;
    }
  // Gradients start at 1 to check that the backward accumulates.
  std::vector<float> dx(n * in, 1.0f), dw(out * in, 1.0f);
  linear_backward(dy.data(), x.data(), w.data(), dx.data(), dw.data(), n, in, out);
  for (float& v : dx) v -= 1.0f;
  for (float& v : dw) v -= 1.0f;
  auto loss = [&] {
    linear_forward(x.data(), w.data(), y.data(), n, in, out);
    return dot(dy, y);
  };
  expect_grad(dx, numeric_grad(x, loss), "dx");
  expect_grad(dw, numeric_grad(w, loss), "dw");
  // Null gradients are skipped.
  linear_backward(dy.data(), x.data(), w.data(), nullptr, nullptr, n, in, out);
}

// The linear products split into fixed chunks over the linear pool: every thread count gives the
// same bits, for the row split (n >= 256) and the column split, and the product is still right.
TEST(TrainOps, LinearIsIndependentOfThreadCountAndSplitsCorrectly) {
  for (const int64_t n : {int64_t{40}, int64_t{300}}) {
    const int64_t in = 150, out = 200;
    auto x = randn(n * in, 4), w = randn(out * in, 5), dy = randn(n * out, 6);
    std::vector<std::vector<float>> ys, dxs, dws;
    for (int threads : {1, 2, 3}) {
      set_blas_threads(threads);
      std::vector<float> y(n * out), dx(n * in, 0.0f), dw(out * in, 0.0f);
      linear_forward(x.data(), w.data(), y.data(), n, in, out);
      linear_backward(dy.data(), x.data(), w.data(), dx.data(), dw.data(), n, in, out);
      ys.push_back(y), dxs.push_back(dx), dws.push_back(dw);
    }
    set_blas_threads(1);
    for (size_t i = 1; i < ys.size(); ++i) {
      EXPECT_TRUE(ys[i] == ys[0]) << "n " << n;
      EXPECT_TRUE(dxs[i] == dxs[0]) << "n " << n;
      EXPECT_TRUE(dws[i] == dws[0]) << "n " << n;
    }
    for (int64_t r : {int64_t{0}, n - 1})
      for (int64_t o : {int64_t{0}, out - 1}) {
        double sy = 0.0, sw = 0.0;
        for (int64_t j = 0; j < in; ++j) sy += static_cast<double>(x[r * in + j]) * w[o * in + j];
        for (int64_t t = 0; t < n; ++t) sw += static_cast<double>(dy[t * out + o]) * x[t * in + r % in];
        EXPECT_NEAR(ys[0][r * out + o], sy, 1e-3);
        EXPECT_NEAR(dws[0][o * in + r % in], sw, 1e-3);
      }
  }
}

// ---- embedding -------------------------------------------------------------------------------

TEST(TrainOps, EmbeddingGathersAndBackwardAddsRepeatedTokens) {
  const int64_t V = 6, dim = 4, n = 5;
  const std::vector<int32_t> tok = {3, 0, 3, 5, 3};
  auto table = randn(V * dim, 4), dout = randn(n * dim, 5);
  std::vector<float> out(n * dim);
  embedding_forward(tok.data(), table.data(), out.data(), n, dim);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(out[i * dim + j], table[tok[i] * dim + j]);
  std::vector<float> dtable(V * dim, 0.0f);
  embedding_backward(tok.data(), dout.data(), dtable.data(), n, dim);
  auto loss = [&] {
    embedding_forward(tok.data(), table.data(), out.data(), n, dim);
    return dot(dout, out);
  };
  expect_grad(dtable, numeric_grad(table, loss), "dtable");
  const std::vector<int32_t> bad = {-1};
  EXPECT_THROW(embedding_forward(bad.data(), table.data(), out.data(), 1, dim), Error);
}

// ---- RMSNorm ---------------------------------------------------------------------------------

TEST(TrainOps, RmsNormStridedRowsMatchFiniteDifferences) {
  const int64_t n = 3, dim = 8, xs = 11, ys = 10;  // strided rows with gaps
  const float eps = 1e-5f;
  auto x = randn(n * xs, 6), w = randn(dim, 7), dy = randn(n * ys, 8);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = dim; j < ys; ++j) dy[i * ys + j] = 0.0f;  // the gaps are not outputs
  std::vector<float> y(n * ys, 42.0f), rstd(n);
  rmsnorm_forward(x.data(), xs, w.data(), y.data(), ys, rstd.data(), n, dim, eps);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += x[i * xs + j] * x[i * xs + j];
    const double r = 1.0 / std::sqrt(ss / dim + eps);
    EXPECT_NEAR(rstd[i], r, 1e-5 * r);
    for (int64_t j = 0; j < dim; ++j) EXPECT_NEAR(y[i * ys + j], x[i * xs + j] * r * w[j], 1e-5);
    for (int64_t j = dim; j < ys; ++j) EXPECT_EQ(y[i * ys + j], 42.0f) << "gap written";
  }
  std::vector<float> dx(n * xs, 0.0f), dw(dim, 0.0f);
  rmsnorm_backward(dy.data(), ys, x.data(), xs, w.data(), rstd.data(), dx.data(), dw.data(), n, dim);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = dim; j < xs; ++j) EXPECT_EQ(dx[i * xs + j], 0.0f) << "gap written";
  auto loss = [&] {
    rmsnorm_forward(x.data(), xs, w.data(), y.data(), ys, rstd.data(), n, dim, eps);
    return dot(dy, y);
  };
  expect_grad(dx, numeric_grad(x, loss, 1e-3f), "dx");
  expect_grad(dw, numeric_grad(w, loss, 1e-3f), "dw");
}

// ---- RoPE ------------------------------------------------------------------------------------

TEST(TrainOps, RopeMatchesInferenceKernelBitForBit) {
  const int64_t n_heads = 3, head_dim = 10, n_rot = 6, n_pos = 40;
  const RopeTable t = make_rope_table(n_pos, n_rot, 10000.0f);
  kernels::RopeParams p;
  p.n_rot = n_rot;
  p.freq_base = 10000.0f;
  const std::vector<int32_t> pos = {0, 1, 7, 39};
  auto x = randn(pos.size() * n_heads * head_dim, 9);
  auto ref = x;
  rope_apply(x.data(), static_cast<int64_t>(pos.size()), n_heads, n_heads * head_dim, head_dim, 0, pos.data(),
             t, false);
  for (size_t r = 0; r < pos.size(); ++r)
    kernels::rope(ref.data() + r * n_heads * head_dim, n_heads, head_dim, pos[r], p);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(x[i], ref[i]) << i;
}

TEST(TrainOps, RopeInverseIsTheTransposeAndTheBackward) {
  // Strided rows, an offset (MLA's rope part after the no-rope dims), dims past n_rot untouched.
  const int64_t n_rows = 4, n_heads = 2, head_stride = 9, offset = 2, row_stride = 21, n_rot = 6;
  const RopeTable t = make_rope_table(64, n_rot, 500.0f);
  const std::vector<int32_t> pos = {3, 0, 63, 17};
  auto x = randn(n_rows * row_stride, 10), y = randn(n_rows * row_stride, 11);
  auto rx = x;
  rope_apply(rx.data(), n_rows, n_heads, row_stride, head_stride, offset, pos.data(), t, false);
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < row_stride; ++i) {
      const int64_t h = i / head_stride, d = i % head_stride - offset;
      const bool rotated = h < n_heads && d >= 0 && d < n_rot;
      if (!rotated) {
        EXPECT_EQ(rx[r * row_stride + i], x[r * row_stride + i]) << r << "," << i;
      }
    }
  EXPECT_NE(rx, x);
  // Round trip.
  auto back = rx;
  rope_apply(back.data(), n_rows, n_heads, row_stride, head_stride, offset, pos.data(), t, true);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(back[i], x[i], 1e-6f) << i;
  // <R x, y> == <x, R^T y>, and R^T dy is the gradient of sum(dy * R x).
  auto rty = y;
  rope_apply(rty.data(), n_rows, n_heads, row_stride, head_stride, offset, pos.data(), t, true);
  EXPECT_NEAR(dot(rx, y), dot(x, rty), 1e-4);
  std::vector<float> tmp;
  auto loss = [&] {
    tmp = x;
    rope_apply(tmp.data(), n_rows, n_heads, row_stride, head_stride, offset, pos.data(), t, false);
    return dot(y, tmp);
  };
  expect_grad(rty, numeric_grad(x, loss), "dx");
  const std::vector<int32_t> far = {64};
  EXPECT_THROW(rope_apply(x.data(), 1, 1, row_stride, head_stride, 0, far.data(), t, false), Error);
}

// ---- attention -------------------------------------------------------------------------------

struct AttnBufs {
  AttnShape s;
  std::vector<float> q, k, v, out, probs;
  AttnBufs(const AttnShape& shape, uint32_t seed) : s(shape) {
    const int64_t rows = s.B * s.T;
    q = randn(rows * s.q_stride, seed);
    k = randn(rows * s.k_stride, seed + 1);
    v = randn(rows * s.v_stride, seed + 2);
    out.assign(rows * s.out_stride, 0.0f);
    probs.assign(s.B * s.n_head * s.T * s.T, -1.0f);
  }
  void forward(ThreadPool* pool) {
    attention_forward(s, q.data(), k.data(), v.data(), out.data(), probs.data(), pool);
  }
};

AttnShape gqa_shape() {
  AttnShape s;
  s.B = 2, s.T = 5, s.n_head = 4, s.n_head_kv = 2, s.dk = 6, s.dv = 6;
  s.scale = 1.0f / std::sqrt(6.0f);
  s.q_stride = 4 * 6 + 3, s.k_stride = 2 * 6 + 1, s.v_stride = 2 * 6 + 2, s.out_stride = 4 * 6 + 5;
  return s;
}

// MLA after decompression: every query head has its own k/v head, dk (nope + rope) != dv, and k
// and v are column ranges of wider rows.
AttnShape mla_shape() {
  AttnShape s;
  s.B = 1, s.T = 6, s.n_head = 2, s.n_head_kv = 2, s.dk = 7, s.dv = 4;
  s.scale = 0.3f;
  s.q_stride = 2 * 7, s.k_stride = 2 * 7 + 2 * 4, s.v_stride = 2 * 7 + 2 * 4, s.out_stride = 2 * 4;
  return s;
}

void check_attention(const AttnShape& s, uint32_t seed) {
  AttnBufs a(s, seed);
  ThreadPool pool(2);
  a.forward(&pool);
  // Probabilities: rows sum to 1, exactly 0 above the diagonal.
  for (int64_t bh = 0; bh < s.B * s.n_head; ++bh)
    for (int64_t t = 0; t < s.T; ++t) {
      double sum = 0.0;
      for (int64_t u = 0; u < s.T; ++u) {
        const float p = a.probs[(bh * s.T + t) * s.T + u];
        if (u > t) {
          EXPECT_EQ(p, 0.0f);
        }
        sum += p;
      }
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  // Output against a direct double computation of one query head of the last kv group.
  {
    const int64_t b = s.B - 1, h = s.n_head - 1, g = h / (s.n_head / s.n_head_kv), t = s.T - 1;
    const float* qr = a.q.data() + (b * s.T + t) * s.q_stride + h * s.dk;
    std::vector<double> w(t + 1);
    double mx = -1e300, sum = 0.0;
    for (int64_t u = 0; u <= t; ++u) {
      double d = 0.0;
      for (int64_t j = 0; j < s.dk; ++j) d += qr[j] * a.k[(b * s.T + u) * s.k_stride + g * s.dk + j];
      w[u] = s.scale * d;
      mx = std::max(mx, w[u]);
    }
    for (double& x : w) sum += x = std::exp(x - mx);
    for (int64_t j = 0; j < s.dv; ++j) {
      double o = 0.0;
      for (int64_t u = 0; u <= t; ++u) o += w[u] / sum * a.v[(b * s.T + u) * s.v_stride + g * s.dv + j];
      EXPECT_NEAR(a.out[(b * s.T + t) * s.out_stride + h * s.dv + j], o, 1e-5) << j;
    }
  }
  // Backward vs finite differences; dout zero in the stride gaps, which are not outputs.
  auto dout = randn(a.out.size(), seed + 7);
  for (int64_t r = 0; r < s.B * s.T; ++r)
    for (int64_t j = s.n_head * s.dv; j < s.out_stride; ++j) dout[r * s.out_stride + j] = 0.0f;
  std::vector<float> dq(a.q.size(), 0.0f), dk(a.k.size(), 0.0f), dv(a.v.size(), 0.0f);
  attention_backward(s, dout.data(), a.q.data(), a.k.data(), a.v.data(), a.probs.data(), dq.data(), dk.data(),
                     dv.data(), &pool);
  auto loss = [&] {
    a.forward(nullptr);
    return dot(dout, a.out);
  };
  expect_grad(dq, numeric_grad(a.q, loss), "dq");
  expect_grad(dk, numeric_grad(a.k, loss), "dk");
  expect_grad(dv, numeric_grad(a.v, loss), "dv");
}

TEST(TrainOps, AttentionGqaMatchesReferenceAndFiniteDifferences) { check_attention(gqa_shape(), 20); }

TEST(TrainOps, AttentionMlaDimsMatchReferenceAndFiniteDifferences) { check_attention(mla_shape(), 30); }

TEST(TrainOps, AttentionIsCausal) {
  const AttnShape s = gqa_shape();
  AttnBufs a(s, 40);
  a.forward(nullptr);
  const auto before = a.out;
  // Change everything of the last token of sequence 0: rows t < T-1 of it, and sequence 1, stay.
  const int64_t r = s.T - 1;
  for (int64_t j = 0; j < s.q_stride; ++j) a.q[r * s.q_stride + j] += 1.0f;
  for (int64_t j = 0; j < s.k_stride; ++j) a.k[r * s.k_stride + j] -= 2.0f;
  for (int64_t j = 0; j < s.v_stride; ++j) a.v[r * s.v_stride + j] += 3.0f;
  a.forward(nullptr);
  for (int64_t row = 0; row < s.B * s.T; ++row)
    for (int64_t j = 0; j < s.n_head * s.dv; ++j) {
      const size_t i = row * s.out_stride + j;
      if (row == r)
        EXPECT_NE(a.out[i], before[i]) << row << "," << j;
      else
        EXPECT_EQ(a.out[i], before[i]) << row << "," << j;
    }
}

TEST(TrainOps, AttentionAndCrossEntropyIndependentOfThreadCount) {
  const AttnShape s = gqa_shape();
  ThreadPool p1(1), p2(2), p3(3);
  std::vector<std::vector<float>> outs, probs, grads;
  std::vector<double> losses;
  std::vector<std::vector<float>> dlogits;
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &p1, &p2, &p3}) {
    AttnBufs a(s, 50);
    a.forward(pool);
    auto dout = randn(a.out.size(), 57);
    std::vector<float> dq(a.q.size(), 0.5f), dk(a.k.size(), 0.25f), dv(a.v.size(), -0.5f);
    attention_backward(s, dout.data(), a.q.data(), a.k.data(), a.v.data(), a.probs.data(), dq.data(),
                       dk.data(), dv.data(), pool);
    outs.push_back(a.out);
    probs.push_back(a.probs);
    dq.insert(dq.end(), dk.begin(), dk.end());
    dq.insert(dq.end(), dv.begin(), dv.end());
    grads.push_back(dq);
    const int64_t n = 37, V = 50;
    auto logits = randn(n * V, 58, 3.0f);
    std::vector<int32_t> tgt(n);
    for (int64_t i = 0; i < n; ++i) tgt[i] = static_cast<int32_t>((i * 7) % V) - (i % 5 == 0 ? 100 : 0);
    std::vector<float> d(n * V);
    losses.push_back(cross_entropy(logits.data(), tgt.data(), n, V, 0.1f, d.data(), pool));
    dlogits.push_back(d);
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(outs[i].data(), outs[0].data(), outs[0].size() * sizeof(float))) << i;
    EXPECT_EQ(0, std::memcmp(probs[i].data(), probs[0].data(), probs[0].size() * sizeof(float))) << i;
    EXPECT_EQ(0, std::memcmp(grads[i].data(), grads[0].data(), grads[0].size() * sizeof(float))) << i;
    EXPECT_EQ(0, std::memcmp(dlogits[i].data(), dlogits[0].data(), dlogits[0].size() * sizeof(float))) << i;
    EXPECT_EQ(0, std::memcmp(&losses[i], &losses[0], sizeof(double))) << i;
  }
}

TEST(TrainOps, AttentionRejectsBadHeadCounts) {
  AttnShape s = gqa_shape();
  s.n_head_kv = 3;
  std::vector<float> buf(1000);
  EXPECT_THROW(attention_forward(s, buf.data(), buf.data(), buf.data(), buf.data(), buf.data(), nullptr),
               Error);
}

// ---- SwiGLU ----------------------------------------------------------------------------------

TEST(TrainOps, SwigluMatchesFiniteDifferences) {
  const int64_t n = 40;
  auto g = randn(n, 60, 2.0f), u = randn(n, 61), dy = randn(n, 62);
  std::vector<float> y(n);
  swiglu_forward(g.data(), u.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], g[i] / (1.0 + std::exp(-double(g[i]))) * u[i], 1e-5);
  std::vector<float> dg(n, 0.0f), du(n, 0.0f);
  swiglu_backward(dy.data(), g.data(), u.data(), dg.data(), du.data(), n);
  auto loss = [&] {
    swiglu_forward(g.data(), u.data(), y.data(), n);
    return dot(dy, y);
  };
  expect_grad(dg, numeric_grad(g, loss), "dg");
  expect_grad(du, numeric_grad(u, loss), "du");
}

// ---- cross-entropy ---------------------------------------------------------------------------

TEST(TrainOps, CrossEntropyValueGradientAndIgnoredRows) {
  const int64_t n = 6, V = 9;
  auto logits = randn(n * V, 70, 2.0f);
  logits[3] = 80.0f;  // large logits: the max-subtraction keeps it finite
  const std::vector<int32_t> tgt = {2, -1, 8, 0, -100, 4};
  double ref = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    if (tgt[i] < 0) continue;
    double mx = -1e300, s = 0.0;
    for (int64_t j = 0; j < V; ++j) mx = std::max<double>(mx, logits[i * V + j]);
    for (int64_t j = 0; j < V; ++j) s += std::exp(logits[i * V + j] - mx);
    ref += std::log(s) + mx - logits[i * V + tgt[i]];
  }
  std::vector<float> d(n * V, 7.0f);
  const float dscale = 0.25f;
  const double loss = cross_entropy(logits.data(), tgt.data(), n, V, dscale, d.data(), nullptr);
  EXPECT_NEAR(loss, ref, 1e-4);
  EXPECT_TRUE(std::isfinite(loss));
  for (int64_t j = 0; j < V; ++j) {
    EXPECT_EQ(d[1 * V + j], 0.0f);  // ignored rows: zero gradient
    EXPECT_EQ(d[4 * V + j], 0.0f);
  }
  std::vector<float> scratch(n * V);
  auto f = [&] {
    return dscale * cross_entropy(logits.data(), tgt.data(), n, V, 1.0f, scratch.data(), nullptr);
  };
  expect_grad(d, numeric_grad(logits, f, 1e-3f), "dlogits", 1e-3);
  // Ignored rows change nothing, whatever their logits.
  auto l2 = logits;
  for (int64_t j = 0; j < V; ++j) l2[1 * V + j] = 1000.0f * j;
  EXPECT_EQ(cross_entropy(l2.data(), tgt.data(), n, V, 1.0f, scratch.data(), nullptr),
            cross_entropy(logits.data(), tgt.data(), n, V, 1.0f, scratch.data(), nullptr));
  // dlogits may alias logits.
  auto alias = logits;
  const double loss2 = cross_entropy(alias.data(), tgt.data(), n, V, dscale, alias.data(), nullptr);
  EXPECT_EQ(loss2, loss);
  EXPECT_EQ(alias, d);
  const std::vector<int32_t> over = {9, 0, 0, 0, 0, 0};
  EXPECT_THROW(cross_entropy(logits.data(), over.data(), n, V, 1.0f, scratch.data(), nullptr), Error);
}

// ---- MoE router ------------------------------------------------------------------------------

ModelConfig router_config(const RouterShape& s) {
  ModelConfig c;
  c.n_expert = s.E;
  c.n_expert_used = s.k;
  c.gating_sigmoid = s.sigmoid;
  c.expert_weights_norm = s.norm;
  c.expert_weights_scale = s.scale;
  c.n_expert_groups = s.n_groups;
  c.n_group_used = s.n_group_used;
  return c;
}

void expect_routes_like_inference(const RouterShape& s, const float* bias, uint32_t seed) {
  auto logits = randn(s.n * s.E, seed, 2.0f);
  // A few exact ties, which must go to the lower index as inference does.
  logits[1] = logits[4];
  logits[s.E + 2] = logits[s.E + 3];
  std::vector<int32_t> idx(s.n * s.k);
  std::vector<float> w(s.n * s.k), scores(s.n * s.E);
  router_forward(s, logits.data(), bias, idx.data(), w.data(), scores.data());
  const ModelConfig cfg = router_config(s);
  std::vector<int32_t> ref_idx(s.k);
  std::vector<float> ref_w(s.k);
  for (int64_t t = 0; t < s.n; ++t) {
    route_token(cfg, logits.data() + t * s.E, bias, ref_idx.data(), ref_w.data());
    for (int64_t i = 0; i < s.k; ++i) {
      EXPECT_EQ(idx[t * s.k + i], ref_idx[i]) << "token " << t << " slot " << i;
      EXPECT_EQ(w[t * s.k + i], ref_w[i]) << "token " << t << " slot " << i;
    }
    for (int64_t e = 0; e < s.E; ++e) {
      const double l = logits[t * s.E + e];
      if (s.sigmoid) {
        EXPECT_NEAR(scores[t * s.E + e], 1.0 / (1.0 + std::exp(-l)), 1e-6);
      }
    }
  }
}

TEST(TrainOps, RouterForwardEqualsRouteTokenSoftmaxNorm) {
  RouterShape s;
  s.n = 20, s.E = 8, s.k = 2, s.norm = true;
  expect_routes_like_inference(s, nullptr, 80);
  s.norm = false, s.scale = 1.5f;
  expect_routes_like_inference(s, nullptr, 81);
}

TEST(TrainOps, RouterForwardEqualsRouteTokenSigmoidBiasGroups) {
  RouterShape s;
  s.n = 30, s.E = 16, s.k = 4, s.sigmoid = true, s.norm = true, s.scale = 2.5f, s.n_groups = 4,
  s.n_group_used = 2;
  const auto bias = randn(s.E, 82, 0.5f);
  expect_routes_like_inference(s, bias.data(), 83);
  s.n_group_used = 4;  // all groups: no group limit
  expect_routes_like_inference(s, bias.data(), 84);
  s.n_groups = 0;
  expect_routes_like_inference(s, nullptr, 85);
}

TEST(TrainOps, RouterGroupLimitExcludesWeakGroups) {
  RouterShape s;
  s.n = 1, s.E = 8, s.k = 2, s.sigmoid = true, s.n_groups = 4, s.n_group_used = 1;
  // Expert 0 is the single best, but group 3 (experts 6, 7) has the best top-2 sum.
  const std::vector<float> logits = {5.0f, -5.0f, 0.0f, 0.0f, 0.0f, 0.0f, 3.0f, 3.0f};
  std::vector<int32_t> idx(2);
  std::vector<float> w(2), scores(8);
  router_forward(s, logits.data(), nullptr, idx.data(), w.data(), scores.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{6, 7}));
}

// FD of L = sum(dw * weight(logits)) with the selection held fixed (the test asserts the
// perturbations never change it).
void check_router_backward(const RouterShape& s, float logit_scale, uint32_t seed, float eps = 1e-3f,
                           float offset = 0.0f) {
  auto logits = randn(s.n * s.E, seed, logit_scale);
  for (float& l : logits) l += offset;
  auto dweight = randn(s.n * s.k, seed + 1);
  std::vector<int32_t> idx(s.n * s.k), idx2(s.n * s.k);
  std::vector<float> w(s.n * s.k), scores(s.n * s.E);
  router_forward(s, logits.data(), nullptr, idx.data(), w.data(), scores.data());
  std::vector<float> dl(s.n * s.E, 0.0f);
  router_backward(s, scores.data(), idx.data(), dweight.data(), dl.data());
  std::vector<float> sc2(s.n * s.E);
  auto loss = [&] {
    router_forward(s, logits.data(), nullptr, idx2.data(), w.data(), sc2.data());
    EXPECT_EQ(idx2, idx) << "perturbation changed the selection";
    return dot(dweight, w);
  };
  const auto g = numeric_grad(logits, loss, eps);
  double max_abs = 0.0;
  for (double x : g) max_abs = std::max(max_abs, std::abs(x));
  expect_grad(dl, g, "dlogits", max_abs * 2e-3, 2e-2);
  if (s.sigmoid) {  // unselected experts get nothing
    for (int64_t t = 0; t < s.n; ++t)
      for (int64_t e = 0; e < s.E; ++e)
        if (std::find(idx.begin() + t * s.k, idx.begin() + (t + 1) * s.k, e) == idx.begin() + (t + 1) * s.k) {
          EXPECT_EQ(dl[t * s.E + e], 0.0f);
        }
  }
}

TEST(TrainOps, RouterBackwardSoftmaxMatchesFiniteDifferences) {
  RouterShape s;
  s.n = 6, s.E = 8, s.k = 3, s.norm = true, s.scale = 1.0f;
  check_router_backward(s, 3.0f, 90);
  s.norm = false, s.scale = 2.0f;
  check_router_backward(s, 3.0f, 91);
}

TEST(TrainOps, RouterBackwardSigmoidMatchesFiniteDifferences) {
  RouterShape s;
  s.n = 6, s.E = 8, s.k = 3, s.sigmoid = true, s.norm = true, s.scale = 2.5f;
  check_router_backward(s, 3.0f, 92);
  s.norm = false;
  check_router_backward(s, 3.0f, 93);
}

TEST(TrainOps, RouterBackwardWithClampedNormTreatsSumAsConstant) {
  RouterShape s;
  s.n = 3, s.E = 6, s.k = 2, s.sigmoid = true, s.norm = true;
  // Scores below e^-13 ~ 2e-6: the selected sum stays under the 6.1e-5 clamp.
  check_router_backward(s, 1.0f, 94, 1e-3f, -16.0f);
  // The clamp is really active: normalised weights would sum to 1.
  auto logits = randn(s.n * s.E, 94, 1.0f);
  for (float& l : logits) l -= 16.0f;
  std::vector<int32_t> idx(s.n * s.k);
  std::vector<float> w(s.n * s.k), scores(s.n * s.E);
  router_forward(s, logits.data(), nullptr, idx.data(), w.data(), scores.data());
  for (int64_t t = 0; t < s.n; ++t) EXPECT_LT(w[t * s.k] + w[t * s.k + 1], 0.5f) << t;
}

// Aux loss against its definition, and its gradient by finite differences through the scores
// with the routing (f) held fixed.
void check_aux(const RouterShape& s, uint32_t seed) {
  auto logits = randn(s.n * s.E, seed, 2.0f);
  std::vector<int32_t> idx(s.n * s.k);
  std::vector<float> w(s.n * s.k), scores(s.n * s.E);
  router_forward(s, logits.data(), nullptr, idx.data(), w.data(), scores.data());
  const float alpha = 0.01f, dscale = 3.0f;
  double ref = 0.0;
  for (int64_t e = 0; e < s.E; ++e) {
    double f = 0.0, P = 0.0;
    for (int32_t i : idx) f += i == e;
    f /= static_cast<double>(s.n * s.k);
    for (int64_t t = 0; t < s.n; ++t) {
      double S = 0.0;
      for (int64_t j = 0; j < s.E; ++j) S += scores[t * s.E + j];
      P += scores[t * s.E + e] / (s.sigmoid ? S : 1.0);
    }
    ref += f * P / s.n;
  }
  ref *= alpha * s.E;
  std::vector<float> dl(s.n * s.E, 0.0f);
  EXPECT_NEAR(aux_loss(s, scores.data(), idx.data(), alpha, dscale, dl.data()), ref, 1e-6 * ref);
  std::vector<int32_t> idx2(s.n * s.k);
  auto loss = [&] {
    router_forward(s, logits.data(), nullptr, idx2.data(), w.data(), scores.data());
    return dscale * aux_loss(s, scores.data(), idx.data(), alpha, 0.0f, nullptr);
  };
  const auto g = numeric_grad(logits, loss, 1e-2f);
  double max_abs = 0.0;
  for (double x : g) max_abs = std::max(max_abs, std::abs(x));
  expect_grad(dl, g, "dlogits", max_abs * 2e-3, 1e-2);
}

TEST(TrainOps, AuxLossSoftmaxValueAndGradient) {
  RouterShape s;
  s.n = 10, s.E = 6, s.k = 2, s.norm = true;
  check_aux(s, 100);
}

TEST(TrainOps, AuxLossSigmoidValueAndGradient) {
  RouterShape s;
  s.n = 10, s.E = 6, s.k = 2, s.sigmoid = true, s.norm = true;
  check_aux(s, 101);
}

}  // namespace
}  // namespace moe::train
