// The grouped-layout Q8_0/Q4_0 kernels and their helpers, shared by the ISA units. Include it
// only from an ISA unit (qdot_avx2.cpp, qdot_avx512.cpp, ...), after <immintrin.h>: everything
// here has internal linkage, so each unit gets its own copy compiled for its ISA (see the ODR
// note in cpu_kernels.h).
//
// A unit instantiates grouped_rows<Dot, kQ4> with a Dot policy for the integer step:
//   q4(acc, w, x): adds the products of 4-byte groups of unsigned w (0..15) and signed x into
//                  acc; q4_finish(acc) turns acc into int32 lane sums (acc starts at 0);
//   q8(acc, w, x): adds the 4-byte dot products of unsigned w (0..128) and signed x into the
//                  int32 lanes of acc.
// Whatever the policy, lane k of a group's sums ends up as block k's exact integer sum, so every
// policy gives the reference's results bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"

namespace moe::kernels::cpu {
namespace {

#define MOE_ALWAYS_INLINE inline __attribute__((always_inline))
#define MOE_UNROLL _Pragma("GCC unroll 16")

using ref::QMatmulArgs;

MOE_ALWAYS_INLINE __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
MOE_ALWAYS_INLINE __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// The reference's reduction of the 8 accumulators: [l] + [l + 4], then [l] + [l + 2], then
// [0] + [1].
MOE_ALWAYS_INLINE float reduce8(__m256 acc) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

constexpr size_t kQ8Bytes = 34, kQ4Bytes = 18;
constexpr int64_t kPrefetchBlocks = 512;

// Lanes below kb (all ones), the rest 0. A final group of kb < 8 blocks is read with masked
// loads: nothing past the row is read, and no store-forwarding stall follows as it would after
// filling a zero-padded copy.
MOE_ALWAYS_INLINE __m256i tail_lanes(int kb) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(kb), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Group g + kPrefetchBlocks / 8 of a row (either layout) into L1: streams from DRAM run at a
// fraction of the bandwidth on the hardware prefetcher alone.
template <bool kQ4>
MOE_ALWAYS_INLINE void prefetch_group(const uint8_t* row, int64_t g) {
  const char* p =
      reinterpret_cast<const char*>(row) + (g * 8 + kPrefetchBlocks) * (kQ4 ? kQ4Bytes : kQ8Bytes);
  _mm_prefetch(p, _MM_HINT_T0);
  _mm_prefetch(p + 64, _MM_HINT_T0);
  if constexpr (!kQ4)
    _mm_prefetch(p + 128, _MM_HINT_T0), _mm_prefetch(p + 192, _MM_HINT_T0),
        _mm_prefetch(p + 256, _MM_HINT_T0);
}

// ---- grouped rows

// Without this, GCC reassociates a group's integer sums into a tree over all its products and
// spills those to the stack; accumulating in program order keeps everything in registers.
MOE_ALWAYS_INLINE void keep_in_register(__m256i& v) { __asm__("" : "+x"(v)); }

// The integer sums of one group of kb blocks (kFull: 8) of one row against T tokens. q: the
// group's quants; x[j]: token j's grouped activations for the group (256 bytes, zeros past the
// row's end). Lane k of out[j] is block k's sum (0 from kb on); for Q4_0, of q * x with q in
// 0..15 (the caller subtracts 8 * sum(x)).
template <class Dot, bool kQ4, bool kFull, int T>
MOE_ALWAYS_INLINE void grouped_sums(const uint8_t* q, int kb, const int8_t* const (&x)[T],
                                    __m256i (&out)[T]) {
  if constexpr (kFull) kb = 8;
  const __m256i lanes = kFull ? _mm256_set1_epi32(-1) : tail_lanes(kb);
  auto load_step = [&](int s) {  // step s of the kb blocks (Q4_0: steps s and s + 4 as nibbles)
    return kFull ? load256(q + 32 * s)
                 : _mm256_maskload_epi32(reinterpret_cast<const int*>(q + 4 * kb * s), lanes);
  };
  if constexpr (kQ4) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i p[T];
    MOE_UNROLL
    for (int j = 0; j < T; ++j) p[j] = _mm256_setzero_si256();
    MOE_UNROLL
    for (int v = 0; v < 4; ++v) {
      const __m256i wv = load_step(v);
      const __m256i lo = _mm256_and_si256(wv, m4), hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
      MOE_UNROLL
      for (int j = 0; j < T; ++j) {
        p[j] = Dot::q4(p[j], lo, load256(x[j] + 32 * v));
        p[j] = Dot::q4(p[j], hi, load256(x[j] + 32 * v + 128));
        keep_in_register(p[j]);
      }
    }
    MOE_UNROLL
    for (int j = 0; j < T; ++j) out[j] = Dot::q4_finish(p[j]);
  } else {
    MOE_UNROLL
    for (int j = 0; j < T; ++j) out[j] = _mm256_setzero_si256();
    MOE_UNROLL
    for (int s = 0; s < 8; ++s) {
      const __m256i w = load_step(s);
      const __m256i aw = _mm256_abs_epi8(w);
      MOE_UNROLL
      for (int j = 0; j < T; ++j) {
        out[j] = Dot::q8(out[j], aw, _mm256_sign_epi8(load256(x[j] + 32 * s), w));
        keep_in_register(out[j]);
      }
    }
  }
}

// y for rows r, r + step, ..., r + (R - 1) * step and tokens [t0, t0 + T) of grouped rows: each
// group's weights are loaded once for the T tokens, and the tokens' activations once for the R
// rows.
template <class Dot, bool kQ4, int R, int T>
void grouped_tile(const QMatmulArgs& a, int64_t r, int64_t t0, int64_t step = 1) {
  constexpr size_t kBytes = kQ4 ? kQ4Bytes : kQ8Bytes;
  const int64_t n_in = a.x.n_in, nb = n_in / 32, xrow = (n_in + 255) / 256 * 256;
  __m256 acc[R][T];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) MOE_UNROLL
  for (int j = 0; j < T; ++j) acc[i][j] = _mm256_setzero_ps();
  const uint8_t* w[R];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) w[i] = a.w + static_cast<size_t>(r + i * step) * a.row_stride;
  const int8_t* xq[T];
  const float* xd[T];
  const int32_t* xa[T];
  MOE_UNROLL
  for (int j = 0; j < T; ++j) {
    xq[j] = a.x.qs_grouped + (t0 + j) * xrow;
    xd[j] = a.x.d + (t0 + j) * nb;
    xa[j] = a.x.aux + (t0 + j) * nb;
  }
  // One group: scales dw[i], lanes of xd/xa selected by `lanes` (all for a full group).
  auto group = [&]<bool kFull>(int64_t g, int kb) {
    const __m256i lanes = kFull ? _mm256_set1_epi32(-1) : tail_lanes(kb);
    const int8_t* xg[T];
    __m256 dx[T];
    __m256i ax[T];
    MOE_UNROLL
    for (int j = 0; j < T; ++j) {
      xg[j] = xq[j] + 256 * g;
      dx[j] = kFull ? _mm256_loadu_ps(xd[j] + 8 * g) : _mm256_maskload_ps(xd[j] + 8 * g, lanes);
      if constexpr (kQ4) ax[j] = kFull ? load256(xa[j] + 8 * g) : _mm256_maskload_epi32(xa[j] + 8 * g, lanes);
    }
    MOE_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* base = w[i] + static_cast<size_t>(g) * 8 * kBytes;
      // A tail's kb scales are followed by its quants (16 bytes or more): 16 bytes may be read.
      __m128i h = load128(base);
      if constexpr (!kFull)
        h = _mm_and_si128(h,
                          _mm_packs_epi32(_mm256_castsi256_si128(lanes), _mm256_extracti128_si256(lanes, 1)));
      const __m256 dw = _mm256_cvtph_ps(h);
      __m256i sums[T];
      grouped_sums<Dot, kQ4, kFull, T>(base + 2 * kb, kb, xg, sums);
      MOE_UNROLL
      for (int j = 0; j < T; ++j) {
        if constexpr (kQ4) sums[j] = _mm256_sub_epi32(sums[j], ax[j]);
        acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(dw, dx[j]), _mm256_cvtepi32_ps(sums[j]), acc[i][j]);
      }
    }
  };
  const int64_t full = nb / 8;
  for (int64_t g = 0; g < full; ++g) {
    MOE_UNROLL
    for (int i = 0; i < R; ++i) prefetch_group<kQ4>(w[i], g);
    group.template operator()<true>(g, 8);
  }
  if (const int kb = static_cast<int>(nb - 8 * full); kb > 0) group.template operator()<false>(full, kb);
  MOE_UNROLL
  for (int i = 0; i < R; ++i) MOE_UNROLL
  for (int j = 0; j < T; ++j) a.y[(t0 + j) * a.n_out + r + i * step] = reduce8(acc[i][j]);
}

// Decode (one token): the rows split into kDecodeStreams stretches read side by side, one row of
// each at a time. One core pulls far more bandwidth from several distant sequential streams
// than from one (measured here: 65536 x 1024 Q4_0, 1 stream 7.6 GB/s, 4 streams 15-19 GB/s);
// the hardware prefetcher runs ahead on each.
constexpr int kDecodeStreams = 4;

// The loop order of the quantized kernels over rows [r0, r1) and nt tokens. tile.template
// operator()<R, T>(r, step, t0) computes rows r, r + step, .., r + (R - 1) * step against tokens
// [t0, t0 + T). Decode: kDecodeStreams stretches side by side. Batches: rows in blocks of 16 (in
// L1) under tiles of 4 tokens, each row against the tile's tokens.
template <class Tile>
MOE_ALWAYS_INLINE void schedule_rows(int64_t r0, int64_t r1, int64_t nt, const Tile& tile) {
  if (nt == 1) {
    const int64_t per = (r1 - r0) / kDecodeStreams;
    for (int64_t k = 0; k < per; ++k) tile.template operator()<kDecodeStreams, 1>(r0 + k, per, 0);
    for (int64_t r = r0 + kDecodeStreams * per; r < r1; ++r) tile.template operator()<1, 1>(r, 1, 0);
    return;
  }
  constexpr int64_t kRowBlock = 16;
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t re = rb + kRowBlock < r1 ? rb + kRowBlock : r1;
    int64_t t0 = 0;
    for (; t0 + 4 <= nt; t0 += 4)
      for (int64_t r = rb; r < re; ++r) tile.template operator()<1, 4>(r, 1, t0);
    for (int64_t r = rb; r < re; ++r) {
      switch (nt - t0) {
        case 3:
          tile.template operator()<1, 3>(r, 1, t0);
          break;
        case 2:
          tile.template operator()<1, 2>(r, 1, t0);
          break;
        case 1:
          tile.template operator()<1, 1>(r, 1, t0);
          break;
        default:
          break;
      }
    }
  }
}

template <class Dot, bool kQ4>
void grouped_rows(const QMatmulArgs& a, int64_t r0, int64_t r1) {
  schedule_rows(r0, r1, a.x.n_tokens, [&a]<int R, int T>(int64_t r, int64_t step, int64_t t0) {
    grouped_tile<Dot, kQ4, R, T>(a, r, t0, step);
  });
}

}  // namespace
}  // namespace moe::kernels::cpu
