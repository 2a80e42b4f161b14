#include "kernels/ref/quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/ref/kquants.h"

namespace moe::kernels::ref {
namespace {

// roundf (halves away from zero) for |v| < 2^23, inline: v - trunc(v) is exact.
inline int round_half_away(float v) {
  int i = static_cast<int>(v);
  const float frac = v - static_cast<float>(i);
  if (frac >= 0.5f) {
    ++i;
  } else if (frac <= -0.5f) {
    --i;
  }
  return i;
}

// The fixed reduction of the 8 accumulators of the 32-block order (see the header).
float reduce8(const float acc[8]) {
  float v[4];
  for (int l = 0; l < 4; ++l) v[l] = acc[l] + acc[l + 4];
  const float h0 = v[0] + v[2], h1 = v[1] + v[3];
  return h0 + h1;
}

// Block b of a Q8_0 / Q4_0 row in either layout: its fp16 scale and its 32 values.
template <bool kQ4>
void block_values(const uint8_t* row, bool grouped, int64_t nb, int64_t b, uint16_t* d, int32_t v[32]) {
  constexpr size_t kBytes = kQ4 ? 18 : 34;
  if (!grouped) {
    const uint8_t* blk = row + static_cast<size_t>(b) * kBytes;
    std::memcpy(d, blk, 2);
    for (int i = 0; i < 32; ++i)
      v[i] =
          kQ4 ? (i < 16 ? (blk[2 + i] & 15) : (blk[2 + i - 16] >> 4)) - 8 : static_cast<int8_t>(blk[2 + i]);
    return;
  }
  const int64_t g = b / 8, k = b % 8, kb = std::min<int64_t>(8, nb - 8 * g);
  const uint8_t* base = row + static_cast<size_t>(g) * 8 * kBytes;
  std::memcpy(d, base + 2 * k, 2);
  const uint8_t* q = base + 2 * kb;
  for (int i = 0; i < 32; ++i) {
    if (!kQ4) {
      v[i] = static_cast<int8_t>(q[(i / 4) * 4 * kb + 4 * k + i % 4]);
    } else {
      const int j = i % 16;
      const uint8_t byte = q[(j / 4) * 4 * kb + 4 * k + j % 4];
      v[i] = (i < 16 ? (byte & 15) : (byte >> 4)) - 8;
    }
  }
}

template <bool kQ4>
float dot_blocks32(const uint8_t* w, bool grouped, const int8_t* xq, const float* xd, int64_t nb) {
  float acc[8] = {};
  for (int64_t b = 0; b < nb; ++b) {
    uint16_t dw;
    int32_t wq[32];
    block_values<kQ4>(w, grouped, nb, b, &dw, wq);
    const int8_t* x = xq + b * 32;
    int32_t p = 0;
    for (int i = 0; i < 32; ++i) p += wq[i] * x[i];
    const float s = fp16_to_fp32(dw) * xd[b];
    acc[b % 8] = std::fma(s, static_cast<float>(p), acc[b % 8]);
  }
  for (int64_t b = nb; b % 8 != 0; ++b) acc[b % 8] = std::fma(0.0f, 0.0f, acc[b % 8]);
  return reduce8(acc);
}

void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Q4_K / Q5_K: sum over sub-blocks of sc[j] * dot(q, x) and of m[j] * sum(x), exact.
template <class Block, void (*kUnpack)(const Block&, uint8_t*, uint8_t*, uint8_t*)>
float dot_k_asym(const uint8_t* w, const int8_t* xq, const float* xd, const int32_t* xaux, int64_t nsb) {
  float acc = 0.0f;
  for (int64_t i = 0; i < nsb; ++i) {
    const Block& blk = reinterpret_cast<const Block*>(w)[i];
    uint8_t q[256], sc[8], m[8];
    kUnpack(blk, q, sc, m);
    const int8_t* x = xq + i * 256;
    int32_t sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int32_t p = 0;
      for (int k = 32 * j; k < 32 * j + 32; ++k) p += q[k] * x[k];
      sumi += sc[j] * p;
      summ += m[j] * (xaux[i * 16 + 2 * j] + xaux[i * 16 + 2 * j + 1]);
    }
    const float d = fp16_to_fp32(blk.d) * xd[i];
    const float dmin = fp16_to_fp32(blk.dmin) * xd[i];
    acc = std::fma(d, static_cast<float>(sumi), acc);
    acc = std::fma(-dmin, static_cast<float>(summ), acc);
  }
  return acc;
}

float dot_q6_k(const uint8_t* w, const int8_t* xq, const float* xd, int64_t nsb) {
  float acc = 0.0f;
  for (int64_t i = 0; i < nsb; ++i) {
    const BlockQ6_K& blk = reinterpret_cast<const BlockQ6_K*>(w)[i];
    int8_t q[256], sc[16];
    unpack_q6_k(blk, q, sc);
    const int8_t* x = xq + i * 256;
    int32_t sumi = 0;
    for (int j = 0; j < 16; ++j) {
      int32_t p = 0;
      for (int k = 16 * j; k < 16 * j + 16; ++k) p += q[k] * x[k];
      sumi += sc[j] * p;
    }
    acc = std::fma(fp16_to_fp32(blk.d) * xd[i], static_cast<float>(sumi), acc);
  }
  return acc;
}

void quantize_q8_0_acts(const float* x, int64_t n, int8_t* qs, float* d, int32_t* aux) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float dd = amax / 127.0f;
    const float id = dd != 0.0f ? 1.0f / dd : 0.0f;
    d[b] = fp16_to_fp32(fp32_to_fp16(dd));
    for (int j = 0; j < 32; ++j) qs[b * 32 + j] = static_cast<int8_t>(round_half_away(xb[j] * id));
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) sum += qs[b * 32 + j];
    aux[b] = 8 * sum;
  }
}

void quantize_q8_k_acts(const float* x, int64_t n, int8_t* qs, float* d, int32_t* aux) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const float* xb = x + b * 256;
    int8_t* q = qs + b * 256;
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; ++j) {
      const float ax = std::fabs(xb[j]);
      if (ax > amax) {
        amax = ax;
        max = xb[j];
      }
    }
    if (amax == 0.0f) {
      d[b] = 0.0f;
      std::memset(q, 0, 256);
    } else {
      const float iscale = -127.0f / max;
      for (int j = 0; j < 256; ++j) q[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * xb[j])));
      d[b] = 1.0f / iscale;
    }
    for (int j = 0; j < 16; ++j) {
      int32_t s = 0;
      for (int k = 16 * j; k < 16 * j + 16; ++k) s += q[k];
      aux[b * 16 + j] = s;
    }
  }
}

}  // namespace

DType act_type_for(DType w) {
  switch (w) {
    case DType::Q8_0:
    case DType::Q4_0:
      return DType::Q8_0;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return DType::Q8_K;
    default:
      return DType::F32;
  }
}

int64_t act_d_per_row(DType act, int64_t n_in) { return act == DType::Q8_K ? n_in / 256 : n_in / 32; }
int64_t act_aux_per_row(DType act, int64_t n_in) { return act == DType::Q8_K ? n_in / 16 : n_in / 32; }

void group_rows(DType t, const uint8_t* src, size_t row_stride, int64_t n_rows, int64_t n_in, uint8_t* dst) {
  MOE_CHECK((t == DType::Q8_0 || t == DType::Q4_0) && n_in % 32 == 0, "group_rows: ", dtype_name(t),
            " rows of ", n_in);
  const bool q4 = t == DType::Q4_0;
  const size_t bytes = q4 ? 18 : 34;
  const int64_t nb = n_in / 32;
  for (int64_t r = 0; r < n_rows; ++r) {
    const uint8_t* in = src + static_cast<size_t>(r) * row_stride;
    uint8_t* out = dst + static_cast<size_t>(r) * nb * bytes;
    for (int64_t g = 0; g * 8 < nb; ++g) {
      const int64_t kb = std::min<int64_t>(8, nb - 8 * g);
      const uint8_t* blk = in + static_cast<size_t>(8 * g) * bytes;
      uint8_t* base = out + static_cast<size_t>(8 * g) * bytes;
      uint8_t* q = base + 2 * kb;
      for (int64_t k = 0; k < kb; ++k) {
        const uint8_t* b = blk + k * bytes;
        std::memcpy(base + 2 * k, b, 2);
        for (int i = 0; i < (q4 ? 16 : 32); ++i)  // GGUF Q4_0: byte i = element i | element 16 + i
          q[(i / 4) * 4 * kb + 4 * k + i % 4] = b[2 + i];
      }
    }
  }
}

int64_t grouped_act_row(int64_t n_in) { return (n_in + 255) / 256 * 256; }

void interleave_acts(const int8_t* qs, int64_t n_tokens, int64_t n_in, int8_t* out) {
  const int64_t row = grouped_act_row(n_in);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int8_t* in = qs + t * n_in;
    int8_t* o = out + t * row;
    std::memset(o, 0, static_cast<size_t>(row));
    for (int64_t b = 0; b < n_in / 32; ++b)
      for (int64_t s = 0; s < 8; ++s)
        std::memcpy(o + (b / 8) * 256 + s * 32 + (b % 8) * 4, in + b * 32 + s * 4, 4);
  }
}

void quantize_acts(DType act, const float* x, int64_t n_tokens, int64_t n_in, int8_t* qs, float* d,
                   int32_t* aux) {
  const int64_t block = act == DType::Q8_K ? 256 : 32;
  MOE_CHECK((act == DType::Q8_0 || act == DType::Q8_K) && n_in % block == 0,
            "quantize_acts: ", dtype_name(act), " rows of ", n_in, " elements");
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * n_in;
    int8_t* q = qs + t * n_in;
    float* dt = d + t * act_d_per_row(act, n_in);
    int32_t* at = aux + t * act_aux_per_row(act, n_in);
    if (act == DType::Q8_K) {
      quantize_q8_k_acts(xt, n_in, q, dt, at);
    } else {
      quantize_q8_0_acts(xt, n_in, q, dt, at);
    }
  }
}

void unpack_q4_k(const BlockQ4_K& b, uint8_t q[256], uint8_t sc[8], uint8_t m[8]) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, b.scales, &sc[j], &m[j]);
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      q[64 * g + l] = b.qs[32 * g + l] & 15;
      q[64 * g + 32 + l] = b.qs[32 * g + l] >> 4;
    }
}

void unpack_q5_k(const BlockQ5_K& b, uint8_t q[256], uint8_t sc[8], uint8_t m[8]) {
  for (int j = 0; j < 8; ++j) get_scale_min_k4(j, b.scales, &sc[j], &m[j]);
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l) {
      q[64 * g + l] = static_cast<uint8_t>((b.qs[32 * g + l] & 15) | (((b.qh[l] >> (2 * g)) & 1) << 4));
      q[64 * g + 32 + l] =
          static_cast<uint8_t>((b.qs[32 * g + l] >> 4) | (((b.qh[l] >> (2 * g + 1)) & 1) << 4));
    }
}

void unpack_q6_k(const BlockQ6_K& b, int8_t q[256], int8_t sc[16]) {
  for (int j = 0; j < 16; ++j) sc[j] = b.scales[j];
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* out = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      out[l] = static_cast<int8_t>(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
      out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
      out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
      out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
    }
  }
}

void qmatmul_rows(DType w_type, const QMatmulArgs& a, int64_t r0, int64_t r1) {
  const int64_t n_in = a.x.n_in;
  const DType act = act_type_for(w_type);
  const int64_t d_row = act_d_per_row(act, n_in), aux_row = act_aux_per_row(act, n_in);
  for (int64_t t = 0; t < a.x.n_tokens; ++t) {
    const int8_t* xq = a.x.qs + t * n_in;
    const float* xd = a.x.d + t * d_row;
    const int32_t* xa = a.x.aux + t * aux_row;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* w = a.w + static_cast<size_t>(r) * a.row_stride;
      float v = 0.0f;
      switch (w_type) {
        case DType::Q8_0:
          v = dot_blocks32<false>(w, a.grouped, xq, xd, n_in / 32);
          break;
        case DType::Q4_0:
          v = dot_blocks32<true>(w, a.grouped, xq, xd, n_in / 32);
          break;
        case DType::Q4_K:
          v = dot_k_asym<BlockQ4_K, unpack_q4_k>(w, xq, xd, xa, n_in / 256);
          break;
        case DType::Q5_K:
          v = dot_k_asym<BlockQ5_K, unpack_q5_k>(w, xq, xd, xa, n_in / 256);
          break;
        case DType::Q6_K:
          v = dot_q6_k(w, xq, xd, n_in / 256);
          break;
        default:
          MOE_CHECK(false, "qmatmul: ", dtype_name(w_type), " has no integer kernel");
      }
      a.y[t * a.n_out + r] = v;
    }
  }
}

}  // namespace moe::kernels::ref
