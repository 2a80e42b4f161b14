// Integer dot products of quantized weights with quantized activations, as llama.cpp computes
// them for its block formats: Q8_0 and Q4_0 weights against activations quantized to Q8_0
// (blocks of 32, fp16 scale), K-quants against Q8_K (blocks of 256, f32 scale, sums of 16).
//
// These scalar functions define the result bit for bit; every SIMD path reproduces them exactly,
// whatever the thread split, token batch or weight layout.
//
// Order for 32-element blocks: block b's products sum exactly to an integer i_b;
// s_b = weight scale * activation scale (one f32 multiply); then, for b in order,
// acc[b % 8] = fma(s_b, float(i_b), acc[b % 8]), with the block count padded to a multiple of 8
// by blocks with s_b = i_b = 0. The 8 accumulators reduce as v[l] = acc[l] + acc[l + 4], then
// v[l] + v[l + 2], then v[0] + v[1].
//
// Order for K-quants: each super-block's integer sums are exact; per super-block, in order,
// acc = fma(d, float(sum), acc) and, for Q4_K/Q5_K, acc = fma(-dmin, float(sum of mins), acc),
// where d and dmin are the weight's fp16 scales times the activation's f32 scale.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace moe::kernels::ref {

// Activations of one matmul, quantized per token row. Row t of qs starts at qs + t * n_in, of d
// at d + t * (n_in / block), of aux at aux + t * (n_in / block) for Q8_0 and t * (n_in / 16)
// for Q8_K.
//   Q8_0 form (block 32): d = the fp16 scale as f32; aux[b] = 8 * (sum of block b's values),
//   which turns Q4_0's unsigned nibbles into q - 8.
//   Q8_K form (block 256): d = f32 scale; aux[j] = sum of elements 16j..16j+15.
struct QuantizedActsView {
  const int8_t* qs;
  const float* d;
  const int32_t* aux;
  int64_t n_in;
  int64_t n_tokens;
  // Q8_0 only, may be null: qs in the grouped order (interleave_acts) that SIMD kernels use with
  // grouped weights; row t starts at qs_grouped + t * grouped_act_row(n_in).
  const int8_t* qs_grouped = nullptr;
};

// One matmul over quantized activations: y[t][r] for rows [r0, r1) and every token; row r of
// the weights starts at w + r * row_stride. grouped: Q8_0/Q4_0 rows in the grouped layout.
struct QMatmulArgs {
  const uint8_t* w;
  size_t row_stride;
  bool grouped;
  QuantizedActsView x;
  float* y;
  int64_t n_out;
};

// The activation form a weight type is multiplied with: Q8_0 for Q8_0/Q4_0, Q8_K for K-quants.
// DType::F32 (none) for types that use float kernels.
DType act_type_for(DType w);

// Sizes of the buffers quantize_acts writes, per token row.
int64_t act_d_per_row(DType act, int64_t n_in);
int64_t act_aux_per_row(DType act, int64_t n_in);

// Quantizes rows of x ([n_tokens, n_in]) as ggml's quantize_row_q8_0_ref / quantize_row_q8_K_ref
// do. n_in must be a multiple of the block (32 or 256).
void quantize_acts(DType act, const float* x, int64_t n_tokens, int64_t n_in, int8_t* qs, float* d,
                   int32_t* aux);

// The grouped layout of a Q8_0 / Q4_0 row: the same bytes as GGUF's, regrouped per 8 blocks
// (the last group may hold fewer, kb) as [kb fp16 scales][quants], the quants interleaved in
// 4-element steps so that one 32-byte load holds a step of every block of the group (and a
// maddubs + madd leaves block k's partial sum in lane k, with no horizontal reduction):
//   Q8_0: byte s * 4kb + 4k + e = element 4s + e of block k (s < 8, k < kb, e < 4);
//   Q4_0: byte v * 4kb + 4k + e holds element 4v + e of block k in its low nibble and element
//         16 + 4v + e in its high nibble (v < 4).
// Rows of src (row_stride apart) are written contiguously to dst.
void group_rows(DType t, const uint8_t* src, size_t row_stride, int64_t n_rows, int64_t n_in, uint8_t* dst);

// Length of a row of Q8_0 activations in the grouped order: n_in rounded up to whole groups (256).
int64_t grouped_act_row(int64_t n_in);
// Q8_0 activation quants (qs: [n_tokens, n_in]) in the grouped order: per group of 8 blocks, byte
// s * 32 + 4k + e = element 4s + e of block k; blocks past the row's end are zeros.
void interleave_acts(const int8_t* qs, int64_t n_tokens, int64_t n_in, int8_t* out);

// The reference: rows [r0, r1) of weights of type w_type (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K).
void qmatmul_rows(DType w_type, const QMatmulArgs& a, int64_t r0, int64_t r1);

// Unpacked integer levels of a K-quant super-block:
//   Q4_K/Q5_K: q[i] in 0..15 / 0..31, sc[j] and m[j] the 6-bit scale and min of sub-block j (32);
//   Q6_K: q[i] in -32..31, sc[j] the int8 scale of sub-block j (16).
void unpack_q4_k(const BlockQ4_K& b, uint8_t q[256], uint8_t sc[8], uint8_t m[8]);
void unpack_q5_k(const BlockQ5_K& b, uint8_t q[256], uint8_t sc[8], uint8_t m[8]);
void unpack_q6_k(const BlockQ6_K& b, int8_t q[256], int8_t sc[16]);

}  // namespace moe::kernels::ref
