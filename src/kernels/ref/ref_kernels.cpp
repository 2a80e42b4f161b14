#include "kernels/ref/ref_kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/ref/kquants.h"

namespace moe::kernels::ref {
namespace {

void check_row(DType t, int64_t n) {
  MOE_CHECK(supports(t), "type ", dtype_name(t), " is not supported by the row kernels");
  MOE_CHECK(n >= 0 && n % dtype_traits(t).block_size == 0, "row of ", n,
            " elements is not a multiple of the block size of ", dtype_name(t));
}

// Exact f32 value of element i of a row: every supported type dequantizes without rounding
// (an fp16 scale times a 4- or 8-bit integer fits in a float's mantissa).
template <DType kType>
float element(const void* row, int64_t i);

template <>
float element<DType::F32>(const void* row, int64_t i) {
  return static_cast<const float*>(row)[i];
}
template <>
float element<DType::F16>(const void* row, int64_t i) {
  return fp16_to_fp32(static_cast<const uint16_t*>(row)[i]);
}
template <>
float element<DType::BF16>(const void* row, int64_t i) {
  return bf16_to_fp32(static_cast<const uint16_t*>(row)[i]);
}
template <>
float element<DType::Q8_0>(const void* row, int64_t i) {
  const BlockQ8_0& b = static_cast<const BlockQ8_0*>(row)[i / kQK8_0];
  return fp16_to_fp32(b.d) * static_cast<float>(b.qs[i % kQK8_0]);
}
template <>
float element<DType::Q4_0>(const void* row, int64_t i) {
  const BlockQ4_0& b = static_cast<const BlockQ4_0*>(row)[i / kQK4_0];
  const int64_t j = i % kQK4_0;
  const int q = j < kQK4_0 / 2 ? (b.qs[j] & 15) : (b.qs[j - kQK4_0 / 2] >> 4);
  return fp16_to_fp32(b.d) * static_cast<float>(q - 8);
}

template <DType kType>
float dot_typed(const void* row, const float* x, int64_t n) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(element<kType>(row, i)) * x[i];
  return static_cast<float>(sum);
}

bool is_kquant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// Dequantizes n (a multiple of kQK_K) K-quant values; bit-exact with ggml's dequantize_row_q*_K.
void dequantize_kquant(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::Q4_K:
      return dequantize_row_q4_k(static_cast<const BlockQ4_K*>(src), dst, n);
    case DType::Q5_K:
      return dequantize_row_q5_k(static_cast<const BlockQ5_K*>(src), dst, n);
    case DType::Q6_K:
      return dequantize_row_q6_k(static_cast<const BlockQ6_K*>(src), dst, n);
    default:
      fail("unreachable: dequantize_kquant type ", dtype_name(t));
  }
}

// K-quants: dequantize one super-block at a time (exact), then the same double accumulation.
float dot_kquant(DType t, const void* row, const float* x, int64_t n) {
  const size_t block_bytes = dtype_traits(t).block_bytes;
  float buf[kQK_K];
  double sum = 0.0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    dequantize_kquant(t, static_cast<const uint8_t*>(row) + static_cast<size_t>(b) * block_bytes, buf, kQK_K);
    for (int64_t i = 0; i < kQK_K; ++i) sum += static_cast<double>(buf[i]) * x[b * kQK_K + i];
  }
  return static_cast<float>(sum);
}

template <DType kType>
void matmul_rows_typed(const uint8_t* w, size_t row_stride, int64_t n_in, const float* x, int64_t n_tokens,
                       float* y, int64_t n_out, int64_t r0, int64_t r1) {
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t r = r0; r < r1; ++r)
      y[t * n_out + r] = dot_typed<kType>(w + static_cast<size_t>(r) * row_stride, x + t * n_in, n_in);
}

template <DType kType>
void dequantize_typed(const void* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = element<kType>(src, i);
}

// ggml's quantize_row_q8_0_ref.
void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    float amax = 0.0f;
    for (int64_t j = 0; j < kQK8_0; ++j) {
      const float v = std::fabs(x[i * kQK8_0 + j]);
      amax = amax > v ? amax : v;
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int64_t j = 0; j < kQK8_0; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::roundf(x[i * kQK8_0 + j] * id));
    }
  }
}

// ggml's quantize_row_q4_0_ref: the scale maps the value of largest magnitude to -8.
void quantize_q4_0(const float* x, BlockQ4_0* y, int64_t n) {
  constexpr int64_t qk = kQK4_0;
  for (int64_t i = 0; i < n / qk; ++i) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int64_t j = 0; j < qk; ++j) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int64_t j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const int8_t t0 = static_cast<int8_t>(x0 + 8.5f);
      const int8_t t1 = static_cast<int8_t>(x1 + 8.5f);
      const uint8_t xi0 = static_cast<uint8_t>(t0 < 15 ? t0 : 15);
      const uint8_t xi1 = static_cast<uint8_t>(t1 < 15 ? t1 : 15);
      y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

// ggml's rope_yarn_ramp: 1 below `low`, 0 above `high`, linear in between (in pair index).
float rope_yarn_ramp(float low, float high, int64_t i0) {
  const float y = (static_cast<float>(i0 / 2) - low) / std::fmax(0.001f, high - low);
  return 1.0f - std::fmin(1.0f, std::fmax(0.0f, y));
}

// ggml's rope_yarn: cos and sin of the (possibly YaRN-mixed) angle, times the magnitude scale.
void rope_yarn(float theta_extrap, float freq_scale, const float corr_dims[2], int64_t i0, float ext_factor,
               float mscale, float* cos_theta, float* sin_theta) {
  const float theta_interp = freq_scale * theta_extrap;
  float theta = theta_interp;
  if (ext_factor != 0.0f) {
    const float ramp_mix = rope_yarn_ramp(corr_dims[0], corr_dims[1], i0) * ext_factor;
    theta = theta_interp * (1 - ramp_mix) + theta_extrap * ramp_mix;
    mscale *= 1.0f + 0.1f * std::log(1.0f / freq_scale);
  }
  *cos_theta = std::cos(theta) * mscale;
  *sin_theta = std::sin(theta) * mscale;
}

float rope_yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot, float base) {
  return static_cast<float>(n_dims) *
         std::log(static_cast<float>(n_ctx_orig) / (n_rot * 2 * static_cast<float>(M_PI))) /
         (2 * std::log(base));
}

}  // namespace

bool supports(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0 ||
         is_kquant(t);
}

float dot_row(DType t, const void* row, const float* x, int64_t n) {
  check_row(t, n);
  switch (t) {
    case DType::F32:
      return dot_typed<DType::F32>(row, x, n);
    case DType::F16:
      return dot_typed<DType::F16>(row, x, n);
    case DType::BF16:
      return dot_typed<DType::BF16>(row, x, n);
    case DType::Q8_0:
      return dot_typed<DType::Q8_0>(row, x, n);
    case DType::Q4_0:
      return dot_typed<DType::Q4_0>(row, x, n);
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return dot_kquant(t, row, x, n);
    default:
      break;
  }
  fail("unreachable: dot_row type ", dtype_name(t));
}

void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y) {
  const int64_t n_in = w.ne[0];
  const int64_t n_out = w.rows();
  check_row(w.type, n_in);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < n_out; ++r) {
      const uint8_t* row = w.row(r % w.ne[1], r / w.ne[1] % w.ne[2], r / (w.ne[1] * w.ne[2]));
      y[t * n_out + r] = dot_row(w.type, row, x + t * n_in, n_in);
    }
  }
}

void matmul_rows(DType t, const uint8_t* w, size_t row_stride, int64_t n_in, const float* x, int64_t n_tokens,
                 float* y, int64_t n_out, int64_t r0, int64_t r1) {
  check_row(t, n_in);
  switch (t) {
    case DType::F32:
      return matmul_rows_typed<DType::F32>(w, row_stride, n_in, x, n_tokens, y, n_out, r0, r1);
    case DType::F16:
      return matmul_rows_typed<DType::F16>(w, row_stride, n_in, x, n_tokens, y, n_out, r0, r1);
    case DType::BF16:
      return matmul_rows_typed<DType::BF16>(w, row_stride, n_in, x, n_tokens, y, n_out, r0, r1);
    case DType::Q8_0:
      return matmul_rows_typed<DType::Q8_0>(w, row_stride, n_in, x, n_tokens, y, n_out, r0, r1);
    case DType::Q4_0:
      return matmul_rows_typed<DType::Q4_0>(w, row_stride, n_in, x, n_tokens, y, n_out, r0, r1);
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      for (int64_t t_ = 0; t_ < n_tokens; ++t_)
        for (int64_t r = r0; r < r1; ++r)
          y[t_ * n_out + r] = dot_kquant(t, w + static_cast<size_t>(r) * row_stride, x + t_ * n_in, n_in);
      return;
    default:
      break;
  }
}

void weighted_rows(const float* p, int64_t p_stride, int64_t n_out, const float* rows, int64_t row_stride,
                   int64_t n_rows, float* out, int64_t out_stride, int64_t n) {
  for (int64_t h = 0; h < n_out; ++h)
    for (int64_t d = 0; d < n; ++d) {
      double s = 0.0;
      for (int64_t j = 0; j < n_rows; ++j)
        s += static_cast<double>(p[h * p_stride + j]) * rows[j * row_stride + d];
      out[h * out_stride + d] = static_cast<float>(s);
    }
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float mean = n > 0 ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = weight ? (x[i] * scale) * weight[i] : x[i] * scale;
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void rope_yarn_corr_dims(int n_dims, int n_ctx_orig, float freq_base, float beta_fast, float beta_slow,
                         float dims[2]) {
  const float start = std::floor(rope_yarn_corr_dim(n_dims, n_ctx_orig, beta_fast, freq_base));
  const float end = std::ceil(rope_yarn_corr_dim(n_dims, n_ctx_orig, beta_slow, freq_base));
  dims[0] = start > 0.0f ? start : 0.0f;
  dims[1] = end < static_cast<float>(n_dims - 1) ? end : static_cast<float>(n_dims - 1);
}

// ggml_compute_forward_rope_f32 for one token: the angle of pair i0 is pos * theta_scale^(i0/2),
// computed as ggml does by repeated multiplication (not powf per pair) so results match bit for bit.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeParams& p) {
  const int64_t n_rot = p.n_rot;
  MOE_CHECK(n_rot >= 0 && n_rot % 2 == 0 && n_rot <= head_dim, "rope: n_rot ", n_rot,
            " must be even and at most head_dim ", head_dim);
  if (n_rot == 0) return;
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(n_rot));
  float corr_dims[2];
  rope_yarn_corr_dims(static_cast<int>(n_rot), static_cast<int>(p.n_ctx_orig), p.freq_base, p.beta_fast,
                      p.beta_slow, corr_dims);

  // cache[i0] = cos, cache[i0 + 1] = sin of pair i0 (ggml_rope_cache_init).
  MOE_CHECK(p.freq_factors.empty() || static_cast<int64_t>(p.freq_factors.size()) == n_rot / 2,
            "rope: ", p.freq_factors.size(), " frequency factors for ", n_rot, " rotated dims");
  std::vector<float> cache(static_cast<size_t>(n_rot));
  float theta = static_cast<float>(pos);
  for (int64_t i0 = 0; i0 < n_rot; i0 += 2) {
    const float ff = p.freq_factors.empty() ? 1.0f : p.freq_factors[i0 / 2];
    rope_yarn(theta / ff, p.freq_scale, corr_dims, i0, p.ext_factor, p.attn_factor, &cache[i0],
              &cache[i0 + 1]);
    theta *= theta_scale;
  }

  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i0 = 0; i0 < n_rot; i0 += 2) {
      const float cos_theta = cache[i0];
      const float sin_theta = cache[i0 + 1];
      float* a = p.neox ? v + i0 / 2 : v + i0;
      float* b = p.neox ? v + i0 / 2 + n_rot / 2 : v + i0 + 1;
      const float x0 = *a;
      const float x1 = *b;
      *a = x0 * cos_theta - x1 * sin_theta;
      *b = x0 * sin_theta + x1 * cos_theta;
    }
  }
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  if (n == 0) return;  // src and dst may be null
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      dequantize_typed<DType::F16>(src, dst, n);
      return;
    case DType::BF16:
      dequantize_typed<DType::BF16>(src, dst, n);
      return;
    case DType::Q8_0:
      dequantize_typed<DType::Q8_0>(src, dst, n);
      return;
    case DType::Q4_0:
      dequantize_typed<DType::Q4_0>(src, dst, n);
      return;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      dequantize_kquant(t, src, dst, n);
      return;
    default:
      break;
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n);
  if (n == 0) return;  // src and dst may be null
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = fp32_to_fp16(src[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = fp32_to_bf16(src[i]);
      return;
    case DType::Q8_0:
      quantize_q8_0(src, static_cast<BlockQ8_0*>(dst), n);
      return;
    case DType::Q4_0:
      quantize_q4_0(src, static_cast<BlockQ4_0*>(dst), n);
      return;
    case DType::Q4_K:
      quantize_row_q4_k(src, static_cast<BlockQ4_K*>(dst), n);
      return;
    case DType::Q5_K:
      quantize_row_q5_k(src, static_cast<BlockQ5_K*>(dst), n);
      return;
    case DType::Q6_K:
      quantize_row_q6_k(src, static_cast<BlockQ6_K*>(dst), n);
      return;
    default:
      break;
  }
}

}  // namespace moe::kernels::ref
