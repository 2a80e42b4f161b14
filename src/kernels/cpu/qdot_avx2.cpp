// AVX2 integer kernels: quantized weights times activations quantized to Q8_0 / Q8_K
// (maddubs + madd; the CPUs this targets may lack VNNI). Each function reproduces the reference
// in ref/quant_dot.cpp bit for bit: integer sums are exact, and the float steps follow the
// order that header defines. See cpu_kernels.h for why everything here has internal linkage.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/qdot_grouped.h"

namespace moe::kernels::cpu {
namespace {

MOE_ALWAYS_INLINE float load_fp16(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}
MOE_ALWAYS_INLINE __m256i madd_ones(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

// Lane b of the result: the sum of the 8 lanes of v[b] (exact).
MOE_ALWAYS_INLINE __m256i lane_sums8(const __m256i (&v)[8]) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// ---- Q8_0 and Q4_0 weights against Q8_0 activations -------------------------------------------
//
// Work goes by groups of 8 blocks; per group, one vector holds block k's integer sum in lane k,
// and it is scaled and accumulated with one multiply and one fma (the reference's order).
//
// Grouped rows (ref/quant_dot.h) are the fast path, in qdot_grouped.h: weights and activations
// are interleaved in 4-element steps, so maddubs over one step of every block leaves block k's
// partial sums in lane k, and no horizontal reduction is needed.
//
// Rows in GGUF's layout (MOE_REPACK=0) take a plainer path: each block's products summed to 8
// int32 lanes, the 8 blocks' lanes reduced by a transposing add.

// Signed w times signed x: |w| (unsigned) times x with w's sign.
MOE_ALWAYS_INLINE __m256i dot_s8(__m256i w, __m256i x) {
  return madd_ones(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w)));
}

// GGUF's Q4_0 quants (16 bytes: elements 0..15 low nibbles, 16..31 high) as 32 bytes 0..15.
MOE_ALWAYS_INLINE __m256i unpack_q4_0(const uint8_t* q) {
  const __m128i v = load128(q);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

// ---- grouped rows: the AVX2 step
//
// Q4_0 sums stay in int16 over a whole group: a maddubs lane is at most 2 * 15 * 127 and a
// group's 8 steps sum to at most 30480 (activations are in [-127, 127], see quantize_acts). Q8_0
// products (|w| up to 128) need int32 after every step.
struct Avx2Dot {
  static MOE_ALWAYS_INLINE __m256i q4(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(w, x));
  }
  static MOE_ALWAYS_INLINE __m256i q4_finish(__m256i acc) { return madd_ones(acc); }
  static MOE_ALWAYS_INLINE __m256i q8(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, madd_ones(_mm256_maddubs_epi16(w, x)));
  }
};

// ---- rows in GGUF's layout

// The integer sums of blocks 8g .. 8g + kb - 1 of one row against one token (x: the token's
// quants from block 8g on), lane k for block 8g + k; lanes from kb on are 0. For Q4_0 these are
// sums of q * x with q in 0..15 (the caller subtracts 8 * sum(x)).
template <bool kQ4, bool kFull>
MOE_ALWAYS_INLINE __m256i gguf_sums(const uint8_t* row, int64_t g, int kb, const int8_t* x) {
  constexpr size_t kBytes = kQ4 ? kQ4Bytes : kQ8Bytes;
  if constexpr (kFull) kb = 8;
  const uint8_t* base = row + static_cast<size_t>(g) * 8 * kBytes;
  __m256i m[8];
  MOE_UNROLL
  for (int k = 0; k < 8; ++k) {
    m[k] = _mm256_setzero_si256();
    if (kFull || k < kb) {
      if constexpr (kQ4) {
        m[k] = madd_ones(_mm256_maddubs_epi16(unpack_q4_0(base + k * kBytes + 2), load256(x + 32 * k)));
      } else {
        m[k] = dot_s8(load256(base + k * kBytes + 2), load256(x + 32 * k));
      }
    }
  }
  return lane_sums8(m);
}

// The 8 fp16 weight scales of group g as f32 (0 from lane kb on).
template <bool kQ4>
MOE_ALWAYS_INLINE __m256 gguf_scales(const uint8_t* row, int64_t g, int kb) {
  constexpr size_t kBytes = kQ4 ? kQ4Bytes : kQ8Bytes;
  const uint8_t* base = row + static_cast<size_t>(g) * 8 * kBytes;
  alignas(16) uint16_t h[8] = {};
  for (int k = 0; k < kb; ++k) __builtin_memcpy(&h[k], base + k * kBytes, 2);
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

// One row against one token.
template <bool kQ4>
float gguf_dot(const QMatmulArgs& a, int64_t r, int64_t t) {
  const int64_t n_in = a.x.n_in, nb = n_in / 32, full = nb / 8;
  const uint8_t* w = a.w + static_cast<size_t>(r) * a.row_stride;
  const int8_t* xq = a.x.qs + t * n_in;
  const float* xd = a.x.d + t * nb;
  const int32_t* xa = a.x.aux + t * nb;
  __m256 acc = _mm256_setzero_ps();
  auto group = [&]<bool kFull>(int64_t g, int kb) {
    const __m256i lanes = kFull ? _mm256_set1_epi32(-1) : tail_lanes(kb);
    __m256i sums = gguf_sums<kQ4, kFull>(w, g, kb, xq + 256 * g);
    if constexpr (kQ4) sums = _mm256_sub_epi32(sums, _mm256_maskload_epi32(xa + 8 * g, lanes));
    const __m256 dx = _mm256_maskload_ps(xd + 8 * g, lanes);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(gguf_scales<kQ4>(w, g, kb), dx), _mm256_cvtepi32_ps(sums), acc);
  };
  for (int64_t g = 0; g < full; ++g) {
    prefetch_group<kQ4>(w, g);
    group.template operator()<true>(g, 8);
  }
  if (const int kb = static_cast<int>(nb - 8 * full); kb > 0) group.template operator()<false>(full, kb);
  return reduce8(acc);
}

template <bool kQ4>
void qmatmul32(const QMatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.grouped && a.x.qs_grouped != nullptr) {
    grouped_rows<Avx2Dot, kQ4>(a, r0, r1);
    return;
  }
  if (a.grouped) {  // activations without the grouped form: the reference reads both layouts
    ref::qmatmul_rows(kQ4 ? DType::Q4_0 : DType::Q8_0, a, r0, r1);
    return;
  }
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < a.x.n_tokens; ++t) a.y[t * a.n_out + r] = gguf_dot<kQ4>(a, r, t);
}

// ---- K-quants against Q8_K activations ---------------------------------------------------------
//
// One super-block at a time, as the reference orders the float steps; the integer sums (quants,
// and the scale/min corrections over the activations' 16-element sums) are exact in any order.
// Decode reads kDecodeStreams rows side by side, one super-block of each in turn.

// int16 lanes all equal to element e of a 128-bit int16 vector broadcast to both halves.
MOE_ALWAYS_INLINE __m256i bcast16(__m256i v, int e) {
  return _mm256_shuffle_epi8(v, _mm256_set1_epi16(static_cast<int16_t>((2 * e) | ((2 * e + 1) << 8))));
}

// The activations' 16 sums of a super-block (int32, each |s| <= 16 * 127) as int16, in order.
MOE_ALWAYS_INLINE void bsums16(const int32_t* bs, __m128i* lo, __m128i* hi) {
  *lo = _mm_packs_epi32(load128(bs), load128(bs + 4));
  *hi = _mm_packs_epi32(load128(bs + 8), load128(bs + 12));
}

// Lane sums of a (8 x int32) and b (4 x int32): {sum a, sum b}.
MOE_ALWAYS_INLINE void hsum_pair(__m256i a, __m128i b, int32_t* sa, int32_t* sb) {
  const __m128i a4 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(a4, b), _mm_setzero_si128());
  *sa = _mm_cvtsi128_si32(h);
  *sb = _mm_extract_epi32(h, 1);
}

// Q4_K (kQ5 false) or Q5_K: super-block blk against T tokens' 256 activations x[j] (scale
// xd[j], 16-element sums bs[j]), accumulated into acc[j]. The weights are unpacked once for the
// T tokens.
template <bool kQ5, int T>
MOE_ALWAYS_INLINE void k_asym_block(const uint8_t* blk, const int8_t* const (&x)[T], const float (&xd)[T],
                                    const int32_t* const (&bs)[T], float (&acc)[T]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  // The 8 6-bit scales and mins (get_scale_min_k4) as bytes: utmp[0..1] scales, [2..3] mins.
  uint32_t utmp[4];
  __builtin_memcpy(utmp, blk + 4, 12);
  constexpr uint32_t kMask1 = 0x3f3f3f3f, kMask2 = 0x0f0f0f0f, kMask3 = 0x03030303;
  utmp[3] = ((utmp[2] >> 4) & kMask2) | (((utmp[1] >> 6) & kMask3) << 4);
  const uint32_t uaux = utmp[1] & kMask1;
  utmp[1] = (utmp[2] & kMask2) | (((utmp[0] >> 6) & kMask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kMask1;
  const __m128i sm =
      _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(utmp[1]), static_cast<int>(utmp[0])));
  const __m128i mins =
      _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(utmp[3]), static_cast<int>(utmp[2])));
  const __m256i scales = _mm256_broadcastsi128_si256(sm);
  const uint8_t* qs = blk + (kQ5 ? 48 : 16);
  __m256i hbits = kQ5 ? load256(blk + 16) : _mm256_setzero_si256();
  __m256i sumi[T];
  MOE_UNROLL
  for (int j = 0; j < T; ++j) sumi[j] = _mm256_setzero_si256();
  MOE_UNROLL
  for (int g = 0; g < 4; ++g) {
    const __m256i bits = load256(qs + 32 * g);
    __m256i lo = _mm256_and_si256(bits, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
    if constexpr (kQ5) {
      const __m256i one = _mm256_set1_epi8(1);
      lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
      hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), one), 4));
      hbits = _mm256_srli_epi16(hbits, 2);
    }
    const __m256i s_lo = bcast16(scales, 2 * g), s_hi = bcast16(scales, 2 * g + 1);
    MOE_UNROLL
    for (int j = 0; j < T; ++j) {
      const __m256i plo = _mm256_maddubs_epi16(lo, load256(x[j] + 64 * g));
      const __m256i phi = _mm256_maddubs_epi16(hi, load256(x[j] + 64 * g + 32));
      sumi[j] = _mm256_add_epi32(
          sumi[j], _mm256_add_epi32(_mm256_madd_epi16(plo, s_lo), _mm256_madd_epi16(phi, s_hi)));
      if constexpr (T > 1) keep_in_register(sumi[j]);
    }
  }
  const float dw = load_fp16(blk), dminw = load_fp16(blk + 2);
  MOE_UNROLL
  for (int j = 0; j < T; ++j) {
    __m128i b_lo, b_hi;
    bsums16(bs[j], &b_lo, &b_hi);
    // Sub-block k's sum is bs[2k] + bs[2k + 1] (at most 32 * 127: fits int16).
    const __m128i summ4 = _mm_madd_epi16(mins, _mm_hadd_epi16(b_lo, b_hi));
    int32_t si, smin;
    hsum_pair(sumi[j], summ4, &si, &smin);
    const float d = dw * xd[j], dmin = dminw * xd[j];
    float v =
        _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(d), _mm_set_ss(static_cast<float>(si)), _mm_set_ss(acc[j])));
    acc[j] =
        _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(-dmin), _mm_set_ss(static_cast<float>(smin)), _mm_set_ss(v)));
  }
}

// Q6_K: super-block blk against T tokens' activations, accumulated into acc[j].
template <int T>
MOE_ALWAYS_INLINE void q6_k_block(const uint8_t* blk, const int8_t* const (&x)[T], const float (&xd)[T],
                                  const int32_t* const (&bs)[T], float (&acc)[T]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
  const int8_t* sc = reinterpret_cast<const int8_t*>(blk + 192);
  // Byte masks taking int16 element 2k to every lane of the low 128 bits and 2k + 1 to the high.
  auto pick_mask = [](int k) {
    return _mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>((4 * k + 2) | ((4 * k + 3) << 8))),
                            _mm_set1_epi16(static_cast<int16_t>((4 * k) | ((4 * k + 1) << 8))));
  };
  // int16 scales of each half, the same in both 128-bit lanes: [sc 8h .. 8h+7].
  const __m128i sc16 = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc)));
  const __m128i sc16_hi = _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc + 8)));
  __m256i sumi[T];
  MOE_UNROLL
  for (int j = 0; j < T; ++j) sumi[j] = _mm256_setzero_si256();
  MOE_UNROLL
  for (int h = 0; h < 2; ++h) {
    const __m256i scales = _mm256_broadcastsi128_si256(h == 0 ? sc16 : sc16_hi);
    const __m256i ql0 = load256(blk + 64 * h), ql1 = load256(blk + 64 * h + 32);
    const __m256i qh = load256(blk + 128 + 32 * h);
    // Bits 2k..2k+1 of qh moved to bits 4..5.
    const __m256i q[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30)),
        _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30)),
    };
    // 32 elements of q[k] use scale 8h + 2k (first 16, the low 128-bit lane) and 8h + 2k + 1.
    MOE_UNROLL
    for (int k = 0; k < 4; ++k) {
      const __m256i s = _mm256_shuffle_epi8(scales, pick_mask(k));
      MOE_UNROLL
      for (int j = 0; j < T; ++j) {
        const __m256i p = _mm256_maddubs_epi16(q[k], load256(x[j] + 128 * h + 32 * k));
        sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(p, s));
        if constexpr (T > 1) keep_in_register(sumi[j]);
      }
    }
  }
  const float dw = load_fp16(blk + 208);
  MOE_UNROLL
  for (int j = 0; j < T; ++j) {
    // q was stored + 32: subtract 32 * sum_k sc[k] * (sum of x over sub-block k).
    __m128i b_lo, b_hi;
    bsums16(bs[j], &b_lo, &b_hi);
    const __m128i corr = _mm_add_epi32(_mm_madd_epi16(sc16, b_lo), _mm_madd_epi16(sc16_hi, b_hi));
    int32_t si, c;
    hsum_pair(sumi[j], corr, &si, &c);
    const float d = dw * xd[j];
    acc[j] = _mm_cvtss_f32(
        _mm_fmadd_ss(_mm_set_ss(d), _mm_set_ss(static_cast<float>(si - 32 * c)), _mm_set_ss(acc[j])));
  }
}

// Rows r, r + step, .., r + (R - 1) * step against tokens [t0, t0 + T).
template <int kKind, int R, int T>  // kKind: 0 Q4_K, 1 Q5_K, 2 Q6_K
void k_tile(const QMatmulArgs& a, int64_t r, int64_t step, int64_t t0) {
  constexpr size_t kBytes = kKind == 0 ? 144 : kKind == 1 ? 176 : 210;
  const int64_t n_in = a.x.n_in, nsb = n_in / 256;
  const uint8_t* w[R];
  float acc[R][T];
  MOE_UNROLL
  for (int i = 0; i < R; ++i) {
    w[i] = a.w + static_cast<size_t>(r + i * step) * a.row_stride;
    MOE_UNROLL
    for (int j = 0; j < T; ++j) acc[i][j] = 0.0f;
  }
  for (int64_t s = 0; s < nsb; ++s) {
    const int8_t* x[T];
    float xd[T];
    const int32_t* bs[T];
    MOE_UNROLL
    for (int j = 0; j < T; ++j) {
      x[j] = a.x.qs + (t0 + j) * n_in + 256 * s;
      xd[j] = a.x.d[(t0 + j) * nsb + s];
      bs[j] = a.x.aux + (t0 + j) * (n_in / 16) + 16 * s;
    }
    MOE_UNROLL
    for (int i = 0; i < R; ++i) {
      const uint8_t* blk = w[i] + static_cast<size_t>(s) * kBytes;
      if constexpr (kKind == 2) {
        q6_k_block<T>(blk, x, xd, bs, acc[i]);
      } else {
        k_asym_block<kKind == 1, T>(blk, x, xd, bs, acc[i]);
      }
    }
  }
  MOE_UNROLL
  for (int i = 0; i < R; ++i) MOE_UNROLL
  for (int j = 0; j < T; ++j) a.y[(t0 + j) * a.n_out + r + i * step] = acc[i][j];
}

template <int kKind>
void qmatmul_k(const QMatmulArgs& a, int64_t r0, int64_t r1) {
  schedule_rows(r0, r1, a.x.n_tokens, [&a]<int R, int T>(int64_t r, int64_t step, int64_t t0) {
    k_tile<kKind, R, T>(a, r, step, t0);
  });
}

// Four outputs by 16 columns at a time: each row chunk is loaded once for the four.
template <int H>
MOE_ALWAYS_INLINE void weighted_block(const float* p, int64_t p_stride, const float* rows, int64_t row_stride,
                                      int64_t n_rows, float* out, int64_t out_stride, int64_t d) {
  __m256 acc[H][2];
  MOE_UNROLL
  for (int h = 0; h < H; ++h) acc[h][0] = acc[h][1] = _mm256_setzero_ps();
  for (int64_t j = 0; j < n_rows; ++j) {
    const float* r = rows + j * row_stride + d;
    const __m256 c0 = _mm256_loadu_ps(r), c1 = _mm256_loadu_ps(r + 8);
    MOE_UNROLL
    for (int h = 0; h < H; ++h) {
      const __m256 w = _mm256_broadcast_ss(p + h * p_stride + j);
      acc[h][0] = _mm256_fmadd_ps(w, c0, acc[h][0]);
      acc[h][1] = _mm256_fmadd_ps(w, c1, acc[h][1]);
    }
  }
  MOE_UNROLL
  for (int h = 0; h < H; ++h) {
    _mm256_storeu_ps(out + h * out_stride + d, acc[h][0]);
    _mm256_storeu_ps(out + h * out_stride + d + 8, acc[h][1]);
  }
}

void weighted_rows(const float* p, int64_t p_stride, int64_t n_out, const float* rows, int64_t row_stride,
                   int64_t n_rows, float* out, int64_t out_stride, int64_t n) {
  const int64_t n16 = n / 16 * 16;
  int64_t h = 0;
  for (; h + 4 <= n_out; h += 4)
    for (int64_t d = 0; d < n16; d += 16)
      weighted_block<4>(p + h * p_stride, p_stride, rows, row_stride, n_rows, out + h * out_stride,
                        out_stride, d);
  for (; h < n_out; ++h)
    for (int64_t d = 0; d < n16; d += 16)
      weighted_block<1>(p + h * p_stride, p_stride, rows, row_stride, n_rows, out + h * out_stride,
                        out_stride, d);
  for (int64_t hh = 0; hh < n_out; ++hh)  // columns past the last 16
    for (int64_t d = n16; d < n; ++d) {
      float s = 0.0f;
      for (int64_t j = 0; j < n_rows; ++j)
        s = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(p[hh * p_stride + j]), _mm_set_ss(rows[j * row_stride + d]),
                                       _mm_set_ss(s)));
      out[hh * out_stride + d] = s;
    }
}

}  // namespace

extern const WeightedRowsFn kAvx2WeightedRows = weighted_rows;

extern const QIsaKernels kAvx2QKernels = {qmatmul32<false>, qmatmul32<true>, qmatmul_k<0>, qmatmul_k<1>,
                                          qmatmul_k<2>};

}  // namespace moe::kernels::cpu
