// Scalar reference K-quants (Q4_K, Q5_K, Q6_K): ggml's dequantize_row_q*_K and
// quantize_row_q*_K_ref, operation for operation in float, so that dequantized values are
// bit-exact with ggml and quantized blocks are byte-identical to what llama-quantize writes
// without an importance matrix. Rows are whole super-blocks (n a multiple of kQK_K); callers
// (ref_kernels.cpp) check that.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace moe::kernels::ref {

void dequantize_row_q4_k(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q5_k(const BlockQ5_K* x, float* y, int64_t n);
void dequantize_row_q6_k(const BlockQ6_K* x, float* y, int64_t n);

void quantize_row_q4_k(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q5_k(const float* x, BlockQ5_K* y, int64_t n);
void quantize_row_q6_k(const float* x, BlockQ6_K* y, int64_t n);

// ggml's nearest_int: round half to even via the 1.5 * 2^23 trick, valid for |f| <= 4194303.
int nearest_int(float f);

}  // namespace moe::kernels::ref
