// AVX-512 kernels (F, BW, VL, DQ; the unit is also built with VNNI and BF16 enabled, so the
// dispatcher requires those too). Only reached through kAvx512Kernels after the CPU check.
// See cpu_kernels.h for why nothing here has external linkage except the table.
// Quantized types go through the integer kernels: qdot_avx512.cpp (VNNI) for grouped Q8_0/Q4_0,
// qdot_avx2.cpp for the rest. BF16 weights are widened to f32 exactly rather than multiplied
// with vdpbf16ps, which would need the activations rounded to bf16 (not the reference's result).

// GCC 12's AVX-512 intrinsic headers self-initialise placeholder vectors (`__m512 __Y = __Y;`),
// which -Wall reports at every use once inlined (GCC bug 105593, fixed in later releases).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/matmul_driver.h"

namespace moe::kernels::cpu {
namespace {

struct Simd512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static MOE_ALWAYS_INLINE V zero() { return _mm512_setzero_ps(); }
  static MOE_ALWAYS_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static MOE_ALWAYS_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static MOE_ALWAYS_INLINE V loadx(const float* p) { return _mm512_loadu_ps(p); }
  static MOE_ALWAYS_INLINE float hsum(V v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
};

struct F32Fmt {
  static constexpr int64_t kStepBytes = 128;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 4;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m512 vec(const State& p, int s) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + 16 * s);
  }
};

struct F16Fmt {
  static constexpr int64_t kStepBytes = 64;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 2;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m512 vec(const State& p, int s) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * s)));
  }
};

struct BF16Fmt {
  static constexpr int64_t kStepBytes = 64;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 2;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m512 vec(const State& p, int s) {
    const __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * s)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
  }
};

// 4 tokens x 4 rows (16 accumulators) or 1-2 tokens x 8 rows, within 32 zmm registers.
template <class Fmt>
void matmul_512(const MatmulArgs& a, int64_t r0, int64_t r1) {
  matmul_rows<Simd512, Fmt, 4, 4, 8>(a, r0, r1);
}

MOE_ALWAYS_INLINE __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

void rms_norm_512(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
    const __m512 c = _mm512_loadu_ps(x + i + 32), d = _mm512_loadu_ps(x + i + 48);
    s0 = _mm512_fmadd_ps(a, a, s0);
    s1 = _mm512_fmadd_ps(b, b, s1);
    s2 = _mm512_fmadd_ps(c, c, s2);
    s3 = _mm512_fmadd_ps(d, d, s3);
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 a = _mm512_loadu_ps(x + i);
    s0 = _mm512_fmadd_ps(a, a, s0);
  }
  if (i < n) {
    const __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
    s0 = _mm512_fmadd_ps(a, a, s0);
  }
  const float sum = Simd512::hsum(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
  const float mean = n > 0 ? sum / static_cast<float>(n) : 0.0f;
  const __m512 scale = _mm512_set1_ps(1.0f / __builtin_sqrtf(mean + eps));
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
    if (weight) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, weight + i));
    _mm512_mask_storeu_ps(out + i, m, v);
  }
}

// Max and scaling in SIMD; the exponentials are libm's expf summed in order, exactly as the
// reference does, so results match it bit for bit.
void softmax_512(float* x, int64_t n) {
  if (n <= 0) return;
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, m, x + i));
  }
  const float max = _mm512_reduce_max_ps(vmax);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = __builtin_expf(x[i] - max);
    sum += x[i];
  }
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

// exp(x) for x clamped to [-87, 88] (Cephes expf: range reduction by ln 2 in two parts, degree-7
// polynomial, 2^n built in the exponent field); about 1 ulp. The clamp only matters where silu's
// result is g or +-0 to within 1e-37. Same operations as the AVX2 version, so both agree exactly.
MOE_ALWAYS_INLINE __m512 exp_512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

void swiglu_512(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 e = exp_512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}

}  // namespace

constinit const IsaKernels kAvx512Kernels = {
    matmul_512<F32Fmt>, matmul_512<F16Fmt>, matmul_512<BF16Fmt>, rms_norm_512, softmax_512, swiglu_512,
};

}  // namespace moe::kernels::cpu
