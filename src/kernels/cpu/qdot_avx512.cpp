// AVX-512 VNNI integer kernels for grouped Q8_0/Q4_0 rows (qdot_grouped.h): one vpdpbusd per
// step instead of maddubs + madd (or maddubs + an int16 add), 256-bit vectors (AVX512VL), which
// this layout fills exactly. Other weight types and GGUF-layout rows use the AVX2 kernels (the
// dispatcher picks them; results are the reference's either way). See cpu_kernels.h for why
// everything here has internal linkage.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/qdot_grouped.h"

namespace moe::kernels::cpu {
namespace {

// vpdpbusd sums without saturation into int32, so neither Q4_0 nor Q8_0 needs a bound argument.
struct VnniDot {
  static MOE_ALWAYS_INLINE __m256i q4(__m256i acc, __m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(acc, w, x);
  }
  static MOE_ALWAYS_INLINE __m256i q4_finish(__m256i acc) { return acc; }
  static MOE_ALWAYS_INLINE __m256i q8(__m256i acc, __m256i w, __m256i x) {
    return _mm256_dpbusd_epi32(acc, w, x);
  }
};

template <bool kQ4>
void qmatmul32_vnni(const QMatmulArgs& a, int64_t r0, int64_t r1) {
  if (a.grouped && a.x.qs_grouped != nullptr) {
    grouped_rows<VnniDot, kQ4>(a, r0, r1);
  } else {
    (kQ4 ? kAvx2QKernels.q4_0 : kAvx2QKernels.q8_0)(a, r0, r1);
  }
}

}  // namespace

extern const QIsaKernels kAvx512QKernels = {qmatmul32_vnni<false>, qmatmul32_vnni<true>, nullptr, nullptr,
                                            nullptr};

}  // namespace moe::kernels::cpu
