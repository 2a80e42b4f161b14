// Plain scalar reference kernels: the oracle the SIMD kernels are tested against, and the
// kernels the dispatcher uses when the CPU (or MOE_ISA=scalar) offers no SIMD path.
//
// They favour clarity and accuracy over speed: dot products and the rms_norm sum of squares
// accumulate in double, so the reference is the more accurate side of every comparison.
// rope, quantize_row and dequantize_row follow ggml's reference code operation for operation.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/kernels.h"

namespace moe::kernels::ref {

// Types dot_row and matmul accept as weights: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K.
bool supports(DType t);

// sum_k row[k] * x[k] over n elements; row is stored as type t (n a multiple of its block size).
float dot_row(DType t, const void* row, const float* x, int64_t n);

// y[t][r] = dot_row(w.type, w.row(r), x + t * n_in, n_in); same shapes as kernels::matmul.
void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y);

// The same for rows [r0, r1) of weights whose row r starts at w + r * row_stride: the scalar
// path of the dispatcher, which splits rows over threads.
void matmul_rows(DType t, const uint8_t* w, size_t row_stride, int64_t n_in, const float* x, int64_t n_tokens,
                 float* y, int64_t n_out, int64_t r0, int64_t r1);

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out);
void weighted_rows(const float* p, int64_t p_stride, int64_t n_out, const float* rows, int64_t row_stride,
                   int64_t n_rows, float* out, int64_t out_stride, int64_t n);
void softmax(float* x, int64_t n);
void swiglu(const float* gate, const float* up, float* out, int64_t n);
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeParams& p);

// ggml_rope_yarn_corr_dims: the first and last dims of the YaRN ramp.
void rope_yarn_corr_dims(int n_dims, int n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                         float dims[2]);

// Conversions for F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K (ggml's reference quantizers and
// dequantizers, bit-exact); throw moe::Error for other types or an n that is
// not a multiple of the block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace moe::kernels::ref
