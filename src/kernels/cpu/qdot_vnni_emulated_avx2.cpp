// The VNNI kernels of qdot_avx512.cpp with vpdpbusd emulated exactly in AVX2, so that machines
// without AVX-512 VNNI test the kernel logic that path runs (QuantDot tests); not used for
// inference. See cpu_kernels.h for why everything here has internal linkage.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/qdot_grouped.h"

namespace moe::kernels::cpu {
namespace {

// vpdpbusd: each int32 lane of acc plus the sum of the 4 products of its bytes, unsigned u
// times signed s, without saturation.
MOE_ALWAYS_INLINE __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i u_lo = _mm256_unpacklo_epi8(u, zero), u_hi = _mm256_unpackhi_epi8(u, zero);
  const __m256i s_lo = _mm256_srai_epi16(_mm256_unpacklo_epi8(s, s), 8);
  const __m256i s_hi = _mm256_srai_epi16(_mm256_unpackhi_epi8(s, s), 8);
  // Per 128-bit lane: bytes 0-7 give pair sums for dwords 0-1, bytes 8-15 for dwords 2-3.
  const __m256i sums = _mm256_hadd_epi32(_mm256_madd_epi16(u_lo, s_lo), _mm256_madd_epi16(u_hi, s_hi));
  return _mm256_add_epi32(acc, sums);
}

struct EmulatedVnniDot {
  static MOE_ALWAYS_INLINE __m256i q4(__m256i acc, __m256i w, __m256i x) { return dpbusd(acc, w, x); }
  static MOE_ALWAYS_INLINE __m256i q4_finish(__m256i acc) { return acc; }
  static MOE_ALWAYS_INLINE __m256i q8(__m256i acc, __m256i w, __m256i x) { return dpbusd(acc, w, x); }
};

template <bool kQ4>
void qmatmul32_emulated(const QMatmulArgs& a, int64_t r0, int64_t r1) {
  grouped_rows<EmulatedVnniDot, kQ4>(a, r0, r1);
}

}  // namespace

extern const QIsaKernels kEmulatedVnniQKernels = {qmatmul32_emulated<false>, qmatmul32_emulated<true>,
                                                  nullptr, nullptr, nullptr};

}  // namespace moe::kernels::cpu
