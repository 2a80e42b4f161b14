// Internal interface between the dispatcher (kernels.cpp, built for baseline x86-64) and the
// per-ISA translation units (kernels_avx2.cpp, kernels_avx512.cpp, built with ISA flags).
//
// ODR hazard: an inline function or template instantiated in an ISA unit may be emitted there as a
// weak symbol compiled with that ISA's instructions, and the linker may then hand that copy to
// baseline callers. So the ISA units keep everything in anonymous namespaces, use no std::
// templates and no inline helpers from other headers, and this interface is plain data:
// a table of function pointers over raw pointers and sizes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ref/quant_dot.h"

namespace moe::kernels::cpu {

// One matmul call, as the dispatcher validated it. Row r of the weights starts at
// w + r * row_stride and holds n_in elements in the kernel's type; x is [n_tokens, n_in] and
// y is [n_tokens, n_out], both row-major f32.
struct MatmulArgs {
  const uint8_t* w;
  size_t row_stride;
  int64_t n_in;
  const float* x;
  int64_t n_tokens;
  float* y;
  int64_t n_out;
};

// Computes y[t][r] for every token t and every row r in [r0, r1).
//
// Determinism: each y[t][r] is computed by one fixed sequence of operations that depends only on
// n_in (and the ISA), never on r0/r1, on the tile the row lands in, on n_tokens or on the token's
// position in the batch. So results are the same for any thread split and a token's result does
// not depend on the other tokens batched with it. The sequence: for each K-block of
// kMatmulKBlock inputs, one vector accumulator is updated by each of the block's 32-element steps
// in order (a partial final step is zero-padded; see matmul_step in matmul_driver.h), reduced
// horizontally, and added to y (the first K-block assigns).
using MatmulRowsFn = void (*)(const MatmulArgs& args, int64_t r0, int64_t r1);

// K-block size in elements (a multiple of 32, hence of every block size): bounds the working set
// of a row tile so that a block of weight rows stays in L2 while every token tile passes over it.
constexpr int64_t kMatmulKBlock = 1024;

struct IsaKernels {
  MatmulRowsFn matmul_f32;
  MatmulRowsFn matmul_f16;
  MatmulRowsFn matmul_bf16;
  void (*rms_norm)(const float* x, const float* weight, int64_t n, float eps, float* out);
  void (*softmax)(float* x, int64_t n);
  void (*swiglu)(const float* gate, const float* up, float* out, int64_t n);
};

// Integer kernels over quantized activations (ref/quant_dot.h defines their exact results):
// rows [r0, r1) of one matmul. Null entries fall back to the reference.
using QMatmulRowsFn = void (*)(const ref::QMatmulArgs& args, int64_t r0, int64_t r1);
struct QIsaKernels {
  QMatmulRowsFn q8_0;
  QMatmulRowsFn q4_0;
  QMatmulRowsFn q4_k;
  QMatmulRowsFn q5_k;
  QMatmulRowsFn q6_k;
};
// AVX2 + FMA + F16C (qdot_avx2.cpp).
extern const QIsaKernels kAvx2QKernels;
// AVX-512 VNNI (qdot_avx512.cpp): Q8_0 and Q4_0 only; null entries use kAvx2QKernels.
extern const QIsaKernels kAvx512QKernels;
// qdot_avx512.cpp's kernels with vpdpbusd emulated in AVX2 (tests only; Q8_0, Q4_0 on grouped
// rows with grouped activations).
extern const QIsaKernels kEmulatedVnniQKernels;

// out[h][d] = sum over j < n_rows of p[h * p_stride + j] * rows[j * row_stride + d], for h < n_out,
// d < n (attention's weighted sum of value rows). Each element sums j in order.
using WeightedRowsFn = void (*)(const float* p, int64_t p_stride, int64_t n_out, const float* rows,
                                int64_t row_stride, int64_t n_rows, float* out, int64_t out_stride,
                                int64_t n);
extern const WeightedRowsFn kAvx2WeightedRows;

// Defined in kernels_avx2.cpp / kernels_avx512.cpp; constant-initialised, so reading them runs
// no ISA-specific code. Only call through them after checking the CPU.
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;

}  // namespace moe::kernels::cpu
