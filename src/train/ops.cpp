#include "train/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "core/error.h"
#include "kernels/kernels.h"

// Debian's generic cblas.h (the alternatives link) need not declare OpenBLAS's extensions.
extern "C" void openblas_set_num_threads(int num_threads);

namespace moe::train {

namespace {

// Runs fn(begin, end) over [0, n) on the pool, or inline without one. Callers split only over
// independent output rows, so the thread count never changes what each element sees.
template <class Fn>
void parallel_for(ThreadPool* pool, int64_t n, const Fn& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->size() <= 1 || n == 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool->run(n, [&](int, int64_t begin, int64_t end) { fn(begin, end); });
}

int blas_int(int64_t v, const char* what) {
  MOE_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), "linear: ", what, " = ", v, " out of BLAS range");
  return static_cast<int>(v);
}

// The pool the linear ops split their products over (each chunk a single-threaded BLAS call on
// whole output rows or columns, so no sum over the inner dimension is ever split: results do not
// depend on the thread count). OpenBLAS's own threads would busy-wait between calls and starve
// the trainer's pool on a small machine.
std::unique_ptr<ThreadPool>& linear_pool() {
  static std::unique_ptr<ThreadPool> pool;
  return pool;
}

// Runs fn(begin, end) over [0, n) in chunks of `chunk` (the last may be shorter) on the linear pool.
// The chunks, and so the shape of every BLAS call, depend only on n and chunk, never on the thread
// count: OpenBLAS picks kernels (and their summation order) by shape, so a thread-dependent split
// would change results with the thread count.
template <class Fn>
void split(int64_t n, int64_t chunk, const Fn& fn) {
  const int64_t chunks = (n + chunk - 1) / chunk;
  ThreadPool* pool = linear_pool().get();
  if (pool == nullptr || chunks < 2) {
    for (int64_t c = 0; c < chunks; ++c) fn(c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
  pool->run(chunks, [&](int, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c * chunk, std::min(n, (c + 1) * chunk));
  });
}

void sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta, tb, blas_int(m, "m"), blas_int(n, "n"), blas_int(k, "k"), 1.0f, a,
              blas_int(lda, "lda"), b, blas_int(ldb, "ldb"), beta, c, blas_int(ldc, "ldc"));
}

}  // namespace

void set_blas_threads(int n) {
  MOE_CHECK(n >= 1, "set_blas_threads: thread count ", n, " must be at least 1");
  openblas_set_num_threads(1);
  if (n == 1)
    linear_pool().reset();
  else if (!linear_pool() || linear_pool()->size() != n)
    linear_pool() = std::make_unique<ThreadPool>(n);
}

// ---- linear ----------------------------------------------------------------------------------

// Rows of y split when there are many (each chunk reads all of W once), else columns.
void linear_forward(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  blas_int(n, "n"), blas_int(in, "in"), blas_int(out, "out");
  if (n == 0 || out == 0) return;
  if (in == 0) {  // BLAS rejects a zero leading dimension; the empty sum is 0
    std::fill_n(y, n * out, 0.0f);
    return;
  }
  if (n >= 256) {
    split(n, 128, [&](int64_t r0, int64_t r1) {
      sgemm(CblasNoTrans, CblasTrans, r1 - r0, out, in, x + r0 * in, in, w, in, 0.0f, y + r0 * out, out);
    });
  } else {
    split(out, 64, [&](int64_t o0, int64_t o1) {
      sgemm(CblasNoTrans, CblasTrans, n, o1 - o0, in, x, in, w + o0 * in, in, 0.0f, y + o0, out);
    });
  }
}

void linear_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n,
                     int64_t in, int64_t out) {
  blas_int(n, "n"), blas_int(in, "in"), blas_int(out, "out");
  if (n == 0 || in == 0 || out == 0) return;  // every gradient is an empty sum: nothing to add
  if (dx != nullptr) {                        // dx [n, in] += dy [n, out] . W [out, in]
    if (n >= 256) {
      split(n, 128, [&](int64_t r0, int64_t r1) {
        sgemm(CblasNoTrans, CblasNoTrans, r1 - r0, in, out, dy + r0 * out, out, w, in, 1.0f, dx + r0 * in,
              in);
      });
    } else {
      split(in, 64, [&](int64_t i0, int64_t i1) {
        sgemm(CblasNoTrans, CblasNoTrans, n, i1 - i0, out, dy, out, w + i0, in, 1.0f, dx + i0, in);
      });
    }
  }
  if (dw != nullptr) {  // dw [out, in] += dy^T [out, n] . x [n, in], split over output rows
    split(out, 64, [&](int64_t o0, int64_t o1) {
      sgemm(CblasTrans, CblasNoTrans, o1 - o0, in, n, dy + o0, out, x, in, 1.0f, dw + o0 * in, in);
    });
  }
}

// ---- embedding -------------------------------------------------------------------------------

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    MOE_CHECK(tokens[i] >= 0, "embedding: token ", tokens[i], " at ", i, " is negative");
    std::copy_n(table + tokens[i] * dim, dim, out + i * dim);
  }
}

// Sequential in i: repeated tokens add into the same row in token order.
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t n, int64_t dim) {
  if (dtable == nullptr) return;
  for (int64_t i = 0; i < n; ++i) {
    MOE_CHECK(tokens[i] >= 0, "embedding: token ", tokens[i], " at ", i, " is negative");
    float* row = dtable + tokens[i] * dim;
    const float* d = dout + i * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += d[j];
  }
}

// ---- RMSNorm ---------------------------------------------------------------------------------

void rmsnorm_forward(const float* x, int64_t x_stride, const float* w, float* y, int64_t y_stride,
                     float* rstd, int64_t n, int64_t dim, float eps) {
  MOE_CHECK(dim > 0, "rmsnorm: dim ", dim, " must be positive");
  for (int64_t i = 0; i < n; ++i) {
    const float* xr = x + i * x_stride;
    float* yr = y + i * y_stride;
    double ss = 0.0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    rstd[i] = r;
    for (int64_t j = 0; j < dim; ++j) yr[j] = xr[j] * r * w[j];
  }
}

// With xh = x * r:  dx = r * (dy*w - xh * mean(dy*w*xh)),  dw = sum over rows of dy * xh.
void rmsnorm_backward(const float* dy, int64_t y_stride, const float* x, int64_t x_stride, const float* w,
                      const float* rstd, float* dx, float* dw, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    const float* dyr = dy + i * y_stride;
    const float* xr = x + i * x_stride;
    const float r = rstd[i];
    if (dw != nullptr)
      for (int64_t j = 0; j < dim; ++j) dw[j] += dyr[j] * (xr[j] * r);
    if (dx == nullptr) continue;
    double dot = 0.0;  // sum of dy * w * xh
    for (int64_t j = 0; j < dim; ++j) dot += static_cast<double>(dyr[j]) * w[j] * (xr[j] * r);
    const float m = static_cast<float>(dot / static_cast<double>(dim));
    float* dxr = dx + i * x_stride;
    for (int64_t j = 0; j < dim; ++j) dxr[j] += r * (dyr[j] * w[j] - xr[j] * r * m);
  }
}

// ---- RoPE ------------------------------------------------------------------------------------

// The angles are built as ggml (and kernels::rope) builds them: theta_scale = base^(-2/n_rot) and
// theta = pos * theta_scale^i by repeated multiplication, so the tables match the inference rope
// bit for bit.
RopeTable make_rope_table(int64_t n_pos, int64_t n_rot, float freq_base) {
  MOE_CHECK(n_pos >= 0 && n_rot >= 0 && n_rot % 2 == 0, "rope: n_rot ", n_rot, " must be even (n_pos ", n_pos,
            ")");
  RopeTable t;
  t.n_rot = n_rot;
  const int64_t half = n_rot / 2;
  t.cos.resize(static_cast<size_t>(n_pos * half));
  t.sin.resize(static_cast<size_t>(n_pos * half));
  if (n_rot == 0) return t;
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  for (int64_t p = 0; p < n_pos; ++p) {
    float theta = static_cast<float>(p);
    for (int64_t i = 0; i < half; ++i) {
      t.cos[p * half + i] = std::cos(theta);
      t.sin[p * half + i] = std::sin(theta);
      theta *= theta_scale;
    }
  }
  return t;
}

void rope_apply(float* x, int64_t n_rows, int64_t n_heads, int64_t row_stride, int64_t head_stride,
                int64_t offset, const int32_t* pos, const RopeTable& t, bool inverse) {
  const int64_t half = t.n_rot / 2;
  if (half == 0) return;
  const int64_t n_pos = static_cast<int64_t>(t.cos.size()) / half;
  for (int64_t r = 0; r < n_rows; ++r) {
    MOE_CHECK(pos[r] >= 0 && pos[r] < n_pos, "rope: position ", pos[r], " of row ", r,
              " outside the table of ", n_pos);
    const float* c = t.cos.data() + pos[r] * half;
    const float* sn = t.sin.data() + pos[r] * half;
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + r * row_stride + h * head_stride + offset;
      for (int64_t i = 0; i < half; ++i) {
        const float s = inverse ? -sn[i] : sn[i];
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c[i] - x1 * s;
        v[2 * i + 1] = x0 * s + x1 * c[i];
      }
    }
  }
}

// ---- attention -------------------------------------------------------------------------------

namespace {

void check_attn(const AttnShape& s) {
  MOE_CHECK(s.B >= 0 && s.T >= 0 && s.n_head > 0 && s.n_head_kv > 0 && s.n_head % s.n_head_kv == 0,
            "attention: n_head ", s.n_head, " must be a positive multiple of n_head_kv ", s.n_head_kv);
  MOE_CHECK(s.dk > 0 && s.dv > 0, "attention: head dims dk ", s.dk, ", dv ", s.dv, " must be positive");
}

}  // namespace

// Per (b, head) task: S = scale Q K^T as one GEMM over the whole T x T block, causal softmax over
// each row's first t + 1 entries (the rest set to 0), O = P V as another GEMM.
void attention_forward(const AttnShape& s, const float* q, const float* k, const float* v, float* out,
                       float* probs, ThreadPool* pool) {
  check_attn(s);
  const int64_t T = s.T, rep = s.n_head / s.n_head_kv;
  parallel_for(pool, s.B * s.n_head, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.n_head, h = bh % s.n_head, g = h / rep;
      float* P = probs + bh * T * T;
      const float* qh = q + b * T * s.q_stride + h * s.dk;
      const float* kg = k + b * T * s.k_stride + g * s.dk;
      const float* vg = v + b * T * s.v_stride + g * s.dv;
      sgemm(CblasNoTrans, CblasTrans, T, T, s.dk, qh, s.q_stride, kg, s.k_stride, 0.0f, P, T);
      for (int64_t t = 0; t < T; ++t) {
        float* p = P + t * T;
        float max = -std::numeric_limits<float>::infinity();
        for (int64_t u = 0; u <= t; ++u) max = std::max(max, p[u] *= s.scale);
        float sum = 0.0f;
        for (int64_t u = 0; u <= t; ++u) sum += p[u] = std::exp(p[u] - max);
        const float inv = 1.0f / sum;
        for (int64_t u = 0; u <= t; ++u) p[u] *= inv;
        std::fill(p + t + 1, p + T, 0.0f);
      }
      sgemm(CblasNoTrans, CblasNoTrans, T, s.dv, T, P, T, vg, s.v_stride, 0.0f,
            out + b * T * s.out_stride + h * s.dv, s.out_stride);
    }
  });
}

// One task per (b, key/value head), running its query heads in order: dk and dv of a kv head are
// shared by its query heads, so splitting those across threads would race (or reorder the sums).
//   dP = dout . v^T;  dS = P * (dP - rowsum(P * dP));  dq += scale dS k;  dk += scale dS^T q;  dv += P^T dout
void attention_backward(const AttnShape& s, const float* dout, const float* q, const float* k, const float* v,
                        const float* probs, float* dq, float* dk, float* dv, ThreadPool* pool) {
  check_attn(s);
  const int64_t T = s.T, rep = s.n_head / s.n_head_kv;
  parallel_for(pool, s.B * s.n_head_kv, [&](int64_t begin, int64_t end) {
    std::vector<float> dS(static_cast<size_t>(T * T));  // [T, T]
    for (int64_t bg = begin; bg < end; ++bg) {
      const int64_t b = bg / s.n_head_kv, g = bg % s.n_head_kv;
      const float* kg = k + b * T * s.k_stride + g * s.dk;
      const float* vg = v + b * T * s.v_stride + g * s.dv;
      for (int64_t h = g * rep; h < (g + 1) * rep; ++h) {
        const float* P = probs + (b * s.n_head + h) * T * T;
        const float* doh = dout + b * T * s.out_stride + h * s.dv;
        const float* qh = q + b * T * s.q_stride + h * s.dk;
        if (dv != nullptr)
          sgemm(CblasTrans, CblasNoTrans, T, s.dv, T, P, T, doh, s.out_stride, 1.0f,
                dv + b * T * s.v_stride + g * s.dv, s.v_stride);
        if (dq == nullptr && dk == nullptr) continue;
        sgemm(CblasNoTrans, CblasTrans, T, T, s.dv, doh, s.out_stride, vg, s.v_stride, 0.0f, dS.data(), T);
        for (int64_t t = 0; t < T; ++t) {
          const float* p = P + t * T;
          float* d = dS.data() + t * T;
          float pdp = 0.0f;  // sum over u of p * dp
          for (int64_t u = 0; u <= t; ++u) pdp += p[u] * d[u];
          for (int64_t u = 0; u <= t; ++u) d[u] = s.scale * p[u] * (d[u] - pdp);
          std::fill(d + t + 1, d + T, 0.0f);
        }
        if (dq != nullptr)
          sgemm(CblasNoTrans, CblasNoTrans, T, s.dk, T, dS.data(), T, kg, s.k_stride, 1.0f,
                dq + b * T * s.q_stride + h * s.dk, s.q_stride);
        if (dk != nullptr)
          sgemm(CblasTrans, CblasNoTrans, T, s.dk, T, dS.data(), T, qh, s.q_stride, 1.0f,
                dk + b * T * s.k_stride + g * s.dk, s.k_stride);
      }
    }
  });
}

// ---- SwiGLU ----------------------------------------------------------------------------------

void swiglu_forward(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// silu'(g) = sig(g) * (1 + g * (1 - sig(g))).
void swiglu_backward(const float* dy, const float* g, const float* u, float* dg, float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    if (dg != nullptr) dg[i] += dy[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    if (du != nullptr) du[i] += dy[i] * g[i] * sig;
  }
}

// ---- cross-entropy ---------------------------------------------------------------------------

// Rows split over the pool; each row's loss lands in its own slot and the slots are summed in row
// order, so the total is the same for any thread count.
double cross_entropy(const float* logits, const int32_t* targets, int64_t n, int64_t V, float dscale,
                     float* dlogits, ThreadPool* pool) {
  MOE_CHECK(V > 0, "cross_entropy: vocabulary size ", V, " must be positive");
  for (int64_t i = 0; i < n; ++i)
    MOE_CHECK(targets[i] < V, "cross_entropy: target ", targets[i], " at row ", i, " not below V = ", V);
  std::vector<double> row_loss(static_cast<size_t>(n), 0.0);
  parallel_for(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* l = logits + i * V;
      float* d = dlogits + i * V;
      const int32_t tgt = targets[i];
      if (tgt < 0) {
        std::fill_n(d, V, 0.0f);
        continue;
      }
      float max = l[0];
      for (int64_t j = 1; j < V; ++j) max = std::max(max, l[j]);
      double sum = 0.0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(l[j] - max));
      const double log_sum = std::log(sum);
      row_loss[i] = log_sum - static_cast<double>(l[tgt] - max);  // read before d (maybe l) is written
      const double inv = 1.0 / sum;
      for (int64_t j = 0; j < V; ++j)
        d[j] = static_cast<float>(dscale * (std::exp(static_cast<double>(l[j] - max)) * inv));
      d[tgt] -= dscale;
    }
  });
  double total = 0.0;
  for (double x : row_loss) total += x;
  return total;
}

// ---- MoE router ------------------------------------------------------------------------------

namespace {

void check_router(const RouterShape& s) {
  MOE_CHECK(s.n >= 0 && s.E > 0 && s.k > 0 && s.k <= s.E, "router: k ", s.k, " must be in [1, E = ", s.E,
            "]");
  if (s.n_groups > 1 && s.n_group_used < s.n_groups) {
    MOE_CHECK(s.E % s.n_groups == 0, "router: ", s.E, " experts do not split into ", s.n_groups, " groups");
    MOE_CHECK(s.n_group_used >= 1 && s.k <= s.n_group_used * (s.E / s.n_groups), "router: k ", s.k,
              " exceeds the experts of ", s.n_group_used, " groups");
  }
}

// As moe_ffn.cpp's top_k: the k largest, best first, ties to the lower index.
void top_k(const float* v, int64_t n, int64_t k, int32_t* out, std::vector<int32_t>& scratch) {
  scratch.resize(static_cast<size_t>(n));
  std::iota(scratch.begin(), scratch.end(), 0);
  std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(),
                    [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy_n(scratch.begin(), k, out);
}

constexpr float kNormClamp = 6.103515625e-5f;  // llama.cpp's clamp: the smallest normal f16

}  // namespace

// Mirrors route_token step for step (same softmax kernel, same float sums) so that training routes
// exactly as inference does.
void router_forward(const RouterShape& s, const float* logits, const float* bias, int32_t* idx, float* weight,
                    float* scores) {
  check_router(s);
  const int64_t E = s.E, k = s.k;
  const bool grouped = s.n_groups > 1 && s.n_group_used < s.n_groups;
  std::vector<float> select(static_cast<size_t>(E)), group_score;
  std::vector<int32_t> scratch, keep;
  std::vector<char> kept;
  for (int64_t t = 0; t < s.n; ++t) {
    float* sc = scores + t * E;
    std::copy_n(logits + t * E, E, sc);
    if (s.sigmoid) {
      for (int64_t e = 0; e < E; ++e) sc[e] = 1.0f / (1.0f + std::exp(-sc[e]));
    } else {
      kernels::softmax(sc, E);
    }
    std::copy_n(sc, E, select.begin());
    if (bias != nullptr)
      for (int64_t e = 0; e < E; ++e) select[e] += bias[e];
    if (grouped) {
      const int64_t per_group = E / s.n_groups;
      group_score.assign(static_cast<size_t>(s.n_groups), 0.0f);
      for (int64_t g = 0; g < s.n_groups; ++g) {
        int32_t best[2];
        const float* sg = select.data() + g * per_group;
        top_k(sg, per_group, std::min<int64_t>(2, per_group), best, scratch);
        group_score[g] = sg[best[0]] + (per_group > 1 ? sg[best[1]] : 0.0f);
      }
      keep.resize(static_cast<size_t>(s.n_group_used));
      top_k(group_score.data(), s.n_groups, s.n_group_used, keep.data(), scratch);
      kept.assign(static_cast<size_t>(s.n_groups), 0);
      for (int32_t g : keep) kept[g] = 1;
      for (int64_t e = 0; e < E; ++e)
        if (!kept[e / per_group]) select[e] = -std::numeric_limits<float>::infinity();
    }
    int32_t* id = idx + t * k;
    float* w = weight + t * k;
    top_k(select.data(), E, k, id, scratch);
    float sum = 0.0f;
    for (int64_t i = 0; i < k; ++i) sum += w[i] = sc[id[i]];
    const float norm = s.norm ? 1.0f / std::max(sum, kNormClamp) : 1.0f;
    for (int64_t i = 0; i < k; ++i) w[i] *= norm * s.scale;
  }
}

// With S = sum of the selected scores: weight_i = scale * s_i / S (norm; S held constant when the
// clamp is active) or scale * s_i. Then through the score function: softmax's full Jacobian
// (reaching every logit of the token) or sigmoid's s (1 - s) on the selected logits.
void router_backward(const RouterShape& s, const float* scores, const int32_t* idx, const float* dweight,
                     float* dlogits) {
  check_router(s);
  if (dlogits == nullptr) return;
  const int64_t E = s.E, k = s.k;
  std::vector<double> dsel(static_cast<size_t>(k));  // d loss / d score of each selected expert
  for (int64_t t = 0; t < s.n; ++t) {
    const float* sc = scores + t * E;
    const int32_t* id = idx + t * k;
    const float* dw = dweight + t * k;
    float* dl = dlogits + t * E;
    float sum = 0.0f;  // as the forward sums it
    for (int64_t i = 0; i < k; ++i) sum += sc[id[i]];
    for (int64_t i = 0; i < k; ++i) dsel[i] = static_cast<double>(s.scale) * dw[i];
    if (s.norm) {
      if (sum >= kNormClamp) {
        double dot = 0.0;  // sum of dw_i s_i
        for (int64_t i = 0; i < k; ++i) dot += static_cast<double>(dw[i]) * sc[id[i]];
        const double S = sum;
        for (int64_t i = 0; i < k; ++i) dsel[i] = s.scale * (dw[i] / S - dot / (S * S));
      } else {
        for (int64_t i = 0; i < k; ++i) dsel[i] /= kNormClamp;
      }
    }
    if (s.sigmoid) {
      for (int64_t i = 0; i < k; ++i) {
        const double si = sc[id[i]];
        dl[id[i]] += static_cast<float>(dsel[i] * si * (1.0 - si));
      }
    } else {  // dl_e = s_e (ds_e - sum_j ds_j s_j), ds zero off the selection
      double dot = 0.0;
      for (int64_t i = 0; i < k; ++i) dot += dsel[i] * sc[id[i]];
      for (int64_t e = 0; e < E; ++e) dl[e] += static_cast<float>(-static_cast<double>(sc[e]) * dot);
      for (int64_t i = 0; i < k; ++i)
        dl[id[i]] += static_cast<float>(static_cast<double>(sc[id[i]]) * dsel[i]);
    }
  }
}

// d aux / d p_ti = alpha E f_i / n =: c_i (f constant). Softmax: dl = s (c - s.c). Sigmoid with
// p = s / S: ds_j = (c_j - p.c) / S, then dl_j = ds_j s_j (1 - s_j).
double aux_loss(const RouterShape& s, const float* scores, const int32_t* idx, float alpha, float dscale,
                float* dlogits) {
  check_router(s);
  const int64_t E = s.E, k = s.k, n = s.n;
  if (n == 0) return 0.0;
  std::vector<double> f(static_cast<size_t>(E), 0.0), P(static_cast<size_t>(E), 0.0);
  for (int64_t i = 0; i < n * k; ++i) {
    MOE_CHECK(idx[i] >= 0 && idx[i] < E, "aux_loss: expert ", idx[i], " at slot ", i, " outside [0, ", E,
              ")");
    f[idx[i]] += 1.0;
  }
  for (double& x : f) x /= static_cast<double>(n * k);
  std::vector<double> p(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    const float* sc = scores + t * E;
    double S = 1.0;
    if (s.sigmoid) {
      S = 0.0;
      for (int64_t e = 0; e < E; ++e) S += sc[e];
    }
    for (int64_t e = 0; e < E; ++e) P[e] += sc[e] / S;
  }
  double aux = 0.0;
  for (int64_t e = 0; e < E; ++e) aux += f[e] * (P[e] / static_cast<double>(n));
  aux *= static_cast<double>(alpha) * static_cast<double>(E);
  if (dlogits == nullptr) return aux;

  std::vector<double> c(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)
    c[e] = static_cast<double>(dscale) * alpha * static_cast<double>(E) * f[e] / static_cast<double>(n);
  for (int64_t t = 0; t < n; ++t) {
    const float* sc = scores + t * E;
    float* dl = dlogits + t * E;
    if (s.sigmoid) {
      double S = 0.0;
      for (int64_t e = 0; e < E; ++e) S += sc[e];
      double pc = 0.0;
      for (int64_t e = 0; e < E; ++e) pc += sc[e] / S * c[e];
      for (int64_t e = 0; e < E; ++e) {
        const double se = sc[e];
        dl[e] += static_cast<float>((c[e] - pc) / S * se * (1.0 - se));
      }
    } else {
      double sc_dot = 0.0;
      for (int64_t e = 0; e < E; ++e) sc_dot += sc[e] * c[e];
      for (int64_t e = 0; e < E; ++e) dl[e] += static_cast<float>(sc[e] * (c[e] - sc_dot));
    }
  }
  return aux;
}

}  // namespace moe::train
