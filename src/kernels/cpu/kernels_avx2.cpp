// AVX2 + FMA + F16C kernels. Only reached through kAvx2Kernels after the CPU check.
// See cpu_kernels.h for why nothing here has external linkage except the table.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/matmul_driver.h"

namespace moe::kernels::cpu {
namespace {

MOE_ALWAYS_INLINE float hsum_256(__m256 v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

struct Simd256 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static MOE_ALWAYS_INLINE V zero() { return _mm256_setzero_ps(); }
  static MOE_ALWAYS_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static MOE_ALWAYS_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static MOE_ALWAYS_INLINE V loadx(const float* p) { return _mm256_loadu_ps(p); }
  static MOE_ALWAYS_INLINE float hsum(V v) { return hsum_256(v); }
};

struct F32Fmt {
  static constexpr int64_t kStepBytes = 128;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 4;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m256 vec(const State& p, int s) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + 8 * s);
  }
};

struct F16Fmt {
  static constexpr int64_t kStepBytes = 64;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 2;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m256 vec(const State& p, int s) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * s)));
  }
};

struct BF16Fmt {
  static constexpr int64_t kStepBytes = 64;
  static constexpr bool kHasTail = true;
  static constexpr int64_t kElemBytes = 2;
  using State = const uint8_t*;
  static MOE_ALWAYS_INLINE State prepare(const uint8_t* p) { return p; }
  static MOE_ALWAYS_INLINE __m256 vec(const State& p, int s) {
    const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * s)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
};

// 4 tokens x 2 rows or 1-2 tokens x 4 rows (8 accumulators), within 16 ymm registers.
template <class Fmt>
void matmul_256(const MatmulArgs& a, int64_t r0, int64_t r1) {
  matmul_rows<Simd256, Fmt, 4, 2, 4>(a, r0, r1);
}

// Lanes [0, min(n, 8)) set.
MOE_ALWAYS_INLINE __m256i tail_mask(int64_t n) {
  const int c = n >= 8 ? 8 : static_cast<int>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(c), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Runs f(i, m) over [0, n) in groups of 8: plain loads and stores for full groups (full),
// masked ones for the final partial group (vmaskmov stores are slow on AMD).
struct Lanes {
  __m256i mask;
  bool full;
  MOE_ALWAYS_INLINE __m256 load(const float* p) const {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
  }
  MOE_ALWAYS_INLINE void store(float* p, __m256 v) const {
    if (full) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, mask, v);
    }
  }
};

template <class F>
MOE_ALWAYS_INLINE void for_lanes(int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) f(i, Lanes{_mm256_setzero_si256(), true});
  if (i < n) f(i, Lanes{tail_mask(n - i), false});
}

void rms_norm_256(const float* x, const float* weight, int64_t n, float eps, float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256 c = _mm256_loadu_ps(x + i + 16), d = _mm256_loadu_ps(x + i + 24);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
    s2 = _mm256_fmadd_ps(c, c, s2);
    s3 = _mm256_fmadd_ps(d, d, s3);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_loadu_ps(x + i);
    s0 = _mm256_fmadd_ps(a, a, s0);
  }
  if (i < n) {
    const __m256 a = _mm256_maskload_ps(x + i, tail_mask(n - i));
    s0 = _mm256_fmadd_ps(a, a, s0);
  }
  const float sum = hsum_256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  const float mean = n > 0 ? sum / static_cast<float>(n) : 0.0f;
  const __m256 scale = _mm256_set1_ps(1.0f / __builtin_sqrtf(mean + eps));
  for_lanes(n, [&](int64_t j, const Lanes& l) {
    __m256 v = _mm256_mul_ps(l.load(x + j), scale);
    if (weight) v = _mm256_mul_ps(v, l.load(weight + j));
    l.store(out + j, v);
  });
}

// Max and scaling in SIMD; the exponentials are libm's expf summed in order, exactly as the
// reference does, so results match it bit for bit.
void softmax_256(float* x, int64_t n) {
  if (n <= 0) return;
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  __m256 vmax = ninf;
  for_lanes(n, [&](int64_t i, const Lanes& l) {
    const __m256 v =
        l.full ? l.load(x + i) : _mm256_blendv_ps(ninf, l.load(x + i), _mm256_castsi256_ps(l.mask));
    vmax = _mm256_max_ps(vmax, v);
  });
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  const float max = _mm_cvtss_f32(q);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = __builtin_expf(x[i] - max);
    sum += x[i];
  }
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for_lanes(n, [&](int64_t i, const Lanes& l) { l.store(x + i, _mm256_mul_ps(l.load(x + i), inv)); });
}

// Same operations as exp_512 in kernels_avx512.cpp (see there).
MOE_ALWAYS_INLINE __m256 exp_256(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void swiglu_256(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  for_lanes(n, [&](int64_t i, const Lanes& l) {
    const __m256 g = l.load(gate + i);
    const __m256 u = l.load(up + i);
    const __m256 e = exp_256(_mm256_sub_ps(_mm256_setzero_ps(), g));
    l.store(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u));
  });
}

}  // namespace

constinit const IsaKernels kAvx2Kernels = {
    matmul_256<F32Fmt>, matmul_256<F16Fmt>, matmul_256<BF16Fmt>, rms_norm_256, softmax_256, swiglu_256,
};

}  // namespace moe::kernels::cpu
