// Compute kernels used by the model code. Each has a plain scalar reference in kernels/ref (the
// oracle the tests compare against) and SIMD versions in kernels/cpu chosen at run time from what
// the CPU reports (AVX-512, AVX2+FMA, scalar). MOE_ISA=scalar|avx2|avx512 in the environment, or
// force_isa(), restricts the choice (never above what the CPU supports).
//
// Determinism contract: every output element is computed by the same sequence of operations
// whatever the thread count, so results do not depend on the number of threads.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "core/thread_pool.h"

namespace moe::kernels {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
const char* isa_name(Isa isa);
Isa detected_isa();       // the best the CPU supports
Isa active_isa();         // what the kernels use now
void force_isa(Isa isa);  // clamps to detected_isa(); for tests and benchmarks

// Types matmul accepts as weights.
bool matmul_supports(DType t);

// A matmul input, [n_tokens, n_in] f32 row-major, with the quantized forms the integer kernels
// use (Q8_0 for Q8_0/Q4_0 weights, Q8_K for K-quants) made on first use and kept: pass one
// Activations to every matmul over the same input (q/kv projections, gate/up) and it is
// quantized once. *x must stay live and unchanged while this object is in use; not thread-safe.
class Activations {
 public:
  Activations(const float* x, int64_t n_tokens, int64_t n_in) : x_(x), n_tokens_(n_tokens), n_in_(n_in) {}
  const float* data() const { return x_; }
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_in() const { return n_in_; }
  // The input quantized as act (DType::Q8_0 or DType::Q8_K).
  struct Quantized {
    std::vector<int8_t> qs;          // [n_tokens, n_in]
    std::vector<float> d;            // [n_tokens, n_in / block]
    std::vector<int32_t> aux;        // see kernels/ref/quant_dot.h
    std::vector<int8_t> qs_grouped;  // Q8_0: [n_tokens, ref::grouped_act_row(n_in)]
  };
  const Quantized& quantized(DType act) const;
  // Makes the form a weight of type w needs now, so that threads may then share this object.
  void prepare_for(DType w) const;

 private:
  const float* x_;
  int64_t n_tokens_, n_in_;
  mutable Quantized q8_0_, q8_k_;
  mutable bool have_q8_0_ = false, have_q8_k_ = false;
};

// y[t][r] = sum_k W[r][k] * x[t][k]
//   w: ne = {n_in, n_out} (rows of type w.type, contiguous within a row)
//   x: [n_tokens, n_in] f32, row-major;  y: [n_tokens, n_out] f32
// pool may be null (single thread). Q8_0, Q4_0 and K-quant weights multiply x quantized to
// Q8_0 / Q8_K with integer dot products, as llama.cpp does; other types multiply f32 x.
void matmul(const Tensor& w, const Activations& x, float* y, ThreadPool* pool);
void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool);
// Rows [r0, r1) of the same product on the calling thread (y keeps its [n_tokens, n_out]
// layout; other rows are left alone). Threads may call it concurrently on disjoint rows once
// x.prepare_for(w.type) has run. Results are identical to matmul's.
void matmul_rows(const Tensor& w, const Activations& x, float* y, int64_t r0, int64_t r1);

// Attention's weighted sum of value rows:
//   out[h * out_stride + d] = sum_{j < n_rows} p[h * p_stride + j] * rows[j * row_stride + d]
// for h < n_out and d < n, each element summed over j in order.
void weighted_rows(const float* p, int64_t p_stride, int64_t n_out, const float* rows, int64_t row_stride,
                   int64_t n_rows, float* out, int64_t out_stride, int64_t n);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i]; weight may be null (no scale). out may be x.
void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);

// In-place softmax over n values (max-subtracted, exact expf).
void softmax(float* x, int64_t n);

// out[i] = silu(gate[i]) * up[i]; out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, int64_t n);

// Rotary position embedding as ggml_rope_ext computes it (with YaRN extrapolation when
// ext_factor != 0). Applies to the first n_rot dims of each head; the rest are untouched.
struct RopeParams {
  int64_t n_rot = 0;           // rotated dims per head (even)
  float freq_base = 10000.0f;  // theta
  float freq_scale = 1.0f;     // 1 / linear scaling factor
  bool neox = false;           // false: pairs (2i, 2i+1); true: pairs (i, i + n_rot/2)
  float ext_factor = 0.0f;     // YaRN: 0 disables
  float attn_factor = 1.0f;    // YaRN magnitude scale
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int64_t n_ctx_orig = 0;  // YaRN original context
  // [n_rot / 2] or empty: per-pair divisors of the angle (Llama 3's rope scaling, llama.cpp's
  // rope_freqs tensor / ggml_rope_ext's freq_factors).
  std::vector<float> freq_factors;
};
// x: [n_heads, head_dim] for one token at position pos, rotated in place.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeParams& p);

// Row conversion between f32 and the block formats (ggml's reference quantizers).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace moe::kernels
