// The tiled matmul loop shared by the ISA units. Include it only from kernels_avx2.cpp and
// kernels_avx512.cpp, after <immintrin.h>: everything here has internal linkage, so each unit gets
// its own copy compiled for its ISA (see the ODR note in cpu_kernels.h).
//
// A unit instantiates matmul_rows<Simd, Fmt, kTokTile, kRowsNarrow, kRowsWide> where
//   Simd: using V; kLanes; zero(); mul(a, b); fma(a, b, c) = a * b + c; loadx(const float*); hsum(V)
//   Fmt:  kStepBytes (bytes of 32 elements); kHasTail (n_in need not be a multiple of 32);
//         kElemBytes (bytes per element, for kHasTail types); using State;
//         prepare(const uint8_t* step) -> State; vec(const State&, int s) -> V, the exact f32
//         values of the s-th group of kLanes weights of the step.
//   kTokTile: tokens per register tile; kRowsNarrow rows per tile when 3+ tokens share the tile,
//   kRowsWide when 1 or 2 do (the register budget is about rows * tokens accumulators).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"

namespace moe::kernels::cpu {
namespace {

#define MOE_ALWAYS_INLINE inline __attribute__((always_inline))
// Fully unrolls the loops over a tile's rows, tokens and vectors so that the accumulator arrays
// become registers (at -O2 GCC otherwise keeps them in memory).
#define MOE_UNROLL _Pragma("GCC unroll 16")

// Weights of one K-block of this many bytes per row, times the rows of a row block, should stay in
// L2 (1-2 MiB per core on current x86) together with a token tile of x.
constexpr int64_t kRowBlockBytes = 256 * 1024;

// One 32-element step of an R x T tile: acc += w_s * x_s for each group s in order.
template <class Simd, class Fmt, int R, int T>
MOE_ALWAYS_INLINE void matmul_step(typename Simd::V (&acc)[R][T], const uint8_t* const (&w)[R],
                                   const float* const (&x)[T]) {
  using V = typename Simd::V;
  constexpr int kVecs = 32 / Simd::kLanes;
  typename Fmt::State st[R];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) st[i] = Fmt::prepare(w[i]);
  MOE_UNROLL
  for (int s = 0; s < kVecs; ++s) {
    V xv[T];
    MOE_UNROLL
    for (int j = 0; j < T; ++j) xv[j] = Simd::loadx(x[j] + s * Simd::kLanes);
    MOE_UNROLL
    for (int i = 0; i < R; ++i) {
      const V wv = Fmt::vec(st[i], s);
      MOE_UNROLL
      for (int j = 0; j < T; ++j) acc[i][j] = Simd::fma(wv, xv[j], acc[i][j]);
    }
  }
}

// y[t0 + j][r + i] (+)= dot over inputs [k0, k1) for an R x T tile. k0 is a multiple of 32; only
// the last K-block of a kHasTail type may end off a step boundary.
template <class Simd, class Fmt, int R, int T>
void matmul_tile(const MatmulArgs& a, int64_t r, int64_t t0, int64_t k0, int64_t k1) {
  using V = typename Simd::V;
  V acc[R][T];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) MOE_UNROLL
  for (int j = 0; j < T; ++j) acc[i][j] = Simd::zero();
  const uint8_t* w[R];
  const float* x[T];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) w[i] = a.w + (r + i) * a.row_stride + k0 / 32 * Fmt::kStepBytes;
  MOE_UNROLL
  for (int j = 0; j < T; ++j) x[j] = a.x + (t0 + j) * a.n_in + k0;

  const int64_t steps = (k1 - k0) / 32;
  for (int64_t k = 0; k < steps; ++k) {
    matmul_step<Simd, Fmt, R, T>(acc, w, x);
    MOE_UNROLL
    for (int i = 0; i < R; ++i) w[i] += Fmt::kStepBytes;
    MOE_UNROLL
    for (int j = 0; j < T; ++j) x[j] += 32;
  }
  if constexpr (Fmt::kHasTail) {
    const int64_t rem = k1 - k0 - steps * 32;
    if (rem > 0) {  // zero-padded copies: padding lanes add 0 * 0 to each accumulator
      alignas(64) uint8_t wbuf[R][Fmt::kStepBytes] = {};
      alignas(64) float xbuf[T][32] = {};
      const uint8_t* wp[R];
      const float* xp[T];
      MOE_UNROLL
      for (int i = 0; i < R; ++i) {
        __builtin_memcpy(wbuf[i], w[i], static_cast<size_t>(rem) * Fmt::kElemBytes);
        wp[i] = wbuf[i];
      }
      MOE_UNROLL
      for (int j = 0; j < T; ++j) {
        __builtin_memcpy(xbuf[j], x[j], static_cast<size_t>(rem) * sizeof(float));
        xp[j] = xbuf[j];
      }
      matmul_step<Simd, Fmt, R, T>(acc, wp, xp);
    }
  }

  MOE_UNROLL
  for (int i = 0; i < R; ++i) {
    MOE_UNROLL
    for (int j = 0; j < T; ++j) {
      const float p = Simd::hsum(acc[i][j]);
      float& out = a.y[(t0 + j) * a.n_out + r + i];
      out = k0 == 0 ? p : out + p;
    }
  }
}

// Rows [rb0, rb1) of tokens [t0, t0 + T) over one K-block: full row tiles, then single rows.
template <class Simd, class Fmt, int R, int T>
void matmul_row_range(const MatmulArgs& a, int64_t rb0, int64_t rb1, int64_t t0, int64_t k0, int64_t k1) {
  int64_t r = rb0;
  for (; r + R <= rb1; r += R) matmul_tile<Simd, Fmt, R, T>(a, r, t0, k0, k1);
  for (; r < rb1; ++r) matmul_tile<Simd, Fmt, 1, T>(a, r, t0, k0, k1);
}

template <class Simd, class Fmt, int kTokTile, int kRowsNarrow, int kRowsWide>
void matmul_token_tile(const MatmulArgs& a, int64_t rb0, int64_t rb1, int64_t t0, int64_t nt, int64_t k0,
                       int64_t k1) {
  static_assert(kTokTile >= 1 && kTokTile <= 4, "token tiles of 1 to 4 are instantiated");
  switch (nt) {
    case 1:
      matmul_row_range<Simd, Fmt, kRowsWide, 1>(a, rb0, rb1, t0, k0, k1);
      break;
    case 2:
      matmul_row_range<Simd, Fmt, kRowsWide, 2>(a, rb0, rb1, t0, k0, k1);
      break;
    case 3:
      matmul_row_range<Simd, Fmt, kRowsNarrow, 3>(a, rb0, rb1, t0, k0, k1);
      break;
    default:
      matmul_row_range<Simd, Fmt, kRowsNarrow, 4>(a, rb0, rb1, t0, k0, k1);
      break;
  }
}

// The loop nest: row blocks (weights of a K-block stay cached) > K-blocks > token tiles > row
// tiles. With a single token tile (decode) a row block is one row tile, so each tile streams its
// rows from memory start to end. The order of loops never changes what a tile computes.
template <class Simd, class Fmt, int kTokTile, int kRowsNarrow, int kRowsWide>
void matmul_rows(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.n_in == 0) {
    for (int64_t t = 0; t < a.n_tokens; ++t)
      for (int64_t r = r0; r < r1; ++r) a.y[t * a.n_out + r] = 0.0f;
    return;
  }
  int64_t rows_per_block;
  if (a.n_tokens <= kTokTile) {
    rows_per_block = a.n_tokens <= 2 ? kRowsWide : kRowsNarrow;
  } else {
    const int64_t kb_bytes = kMatmulKBlock / 32 * Fmt::kStepBytes;
    rows_per_block = kRowBlockBytes / kb_bytes / 8 * 8;
    if (rows_per_block < 8) rows_per_block = 8;
  }
  for (int64_t rb0 = r0; rb0 < r1; rb0 += rows_per_block) {
    const int64_t rb1 = rb0 + rows_per_block < r1 ? rb0 + rows_per_block : r1;
    for (int64_t k0 = 0; k0 < a.n_in; k0 += kMatmulKBlock) {
      const int64_t k1 = k0 + kMatmulKBlock < a.n_in ? k0 + kMatmulKBlock : a.n_in;
      for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTokTile) {
        const int64_t nt = a.n_tokens - t0 < kTokTile ? a.n_tokens - t0 : kTokTile;
        matmul_token_tile<Simd, Fmt, kTokTile, kRowsNarrow, kRowsWide>(a, rb0, rb1, t0, nt, k0, k1);
      }
    }
  }
}

}  // namespace
}  // namespace moe::kernels::cpu
