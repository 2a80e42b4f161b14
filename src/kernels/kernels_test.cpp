// Every kernel on every ISA this CPU offers, against the scalar reference in kernels/ref.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/isa_restorer_test.h"
#include "kernels/ref/quant_dot.h"
#include "kernels/ref/ref_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace moe::kernels {
namespace {

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
    if (static_cast<int>(isa) <= static_cast<int>(detected_isa())) out.push_back(isa);
  return out;
}

std::vector<float> random_floats(std::mt19937& rng, int64_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// A weight matrix of n_out rows of n_in inputs stored as `type`, and its exact f32 values.
struct Weights {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // [n_out, n_in], dequantized
  Tensor tensor;
};

// Rows are quantized from random values; for block types every third block (staggered by row)
// is all zeros so that zero scales are covered. row_pad adds unused bytes after each row.
Weights make_weights(DType type, int64_t n_in, int64_t n_out, uint32_t seed, size_t row_pad = 0) {
  std::mt19937 rng(seed);
  Weights w;
  const size_t rb = row_bytes(type, n_in);
  const size_t stride = rb + row_pad;
  w.bytes.assign(stride * static_cast<size_t>(n_out) + 64, 0xAB);
  w.values.resize(static_cast<size_t>(n_in * n_out));
  const int64_t block = dtype_traits(type).block_size;
  for (int64_t r = 0; r < n_out; ++r) {
    std::vector<float> src = random_floats(rng, n_in);
    if (block > 1)
      for (int64_t b = 0; b < n_in / block; ++b)
        if ((b + r) % 3 == 0) std::fill(src.begin() + b * block, src.begin() + (b + 1) * block, 0.0f);
    ref::quantize_row(type, src.data(), w.bytes.data() + static_cast<size_t>(r) * stride, n_in);
    ref::dequantize_row(type, w.bytes.data() + static_cast<size_t>(r) * stride, w.values.data() + r * n_in,
                        n_in);
  }
  w.tensor.name = "w";
  w.tensor.type = type;
  w.tensor.n_dims = 2;
  w.tensor.ne[0] = n_in;
  w.tensor.ne[1] = n_out;
  set_contiguous_strides(w.tensor);
  w.tensor.nb[1] = stride;
  w.tensor.nb[2] = w.tensor.nb[3] = stride * static_cast<size_t>(n_out);
  w.tensor.data = w.bytes.data();
  return w;
}

// The values the integer kernels multiply: x as quantized for the weight type (Q8_0 / Q8_K)
// and dequantized; x itself for float weights.
std::vector<float> effective_x(DType type, const std::vector<float>& x, int64_t n_tokens, int64_t n_in) {
  const DType act = ref::act_type_for(type);
  if (act == DType::F32) return x;
  std::vector<int8_t> qs(static_cast<size_t>(n_tokens * n_in));
  std::vector<float> d(static_cast<size_t>(n_tokens * ref::act_d_per_row(act, n_in)));
  std::vector<int32_t> aux(static_cast<size_t>(n_tokens * ref::act_aux_per_row(act, n_in)));
  ref::quantize_acts(act, x.data(), n_tokens, n_in, qs.data(), d.data(), aux.data());
  const int64_t block = act == DType::Q8_K ? 256 : 32;
  std::vector<float> out(x.size());
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < n_in; ++i)
      out[t * n_in + i] = d[t * (n_in / block) + i / block] * static_cast<float>(qs[t * n_in + i]);
  return out;
}

// Checks y against the reference with |dy| <= 1e-5 * sum_k |w * x| + 1e-6, where x is what the
// kernel multiplies (effective_x).
void expect_matmul_close(const Weights& w, const std::vector<float>& x_in, int64_t n_tokens,
                         const std::vector<float>& y, const std::string& what) {
  const int64_t n_in = w.tensor.ne[0];
  const int64_t n_out = w.tensor.ne[1];
  const std::vector<float> x = effective_x(w.tensor.type, x_in, n_tokens, n_in);
  std::vector<float> want(static_cast<size_t>(n_tokens * n_out));
  ref::matmul(w.tensor, x.data(), n_tokens, want.data());
  int failures = 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t r = 0; r < n_out; ++r) {
      double mag = 0.0;
      for (int64_t k = 0; k < n_in; ++k) mag += std::fabs(double(w.values[r * n_in + k]) * x[t * n_in + k]);
      const float got = y[t * n_out + r];
      const float exp = want[t * n_out + r];
      if (!(std::fabs(double(got) - exp) <= 1e-5 * mag + 1e-6) && ++failures <= 5) {
        ADD_FAILURE() << what << " token " << t << " row " << r << ": got " << got << " want " << exp;
      }
    }
  }
}

TEST(KernelsIsa, DetectionAndForcing) {
  IsaRestorer restore;
  EXPECT_STREQ(isa_name(Isa::kScalar), "scalar");
  EXPECT_STREQ(isa_name(Isa::kAvx2), "avx2");
  EXPECT_STREQ(isa_name(Isa::kAvx512), "avx512");
  EXPECT_LE(static_cast<int>(active_isa()), static_cast<int>(detected_isa()));
  force_isa(Isa::kAvx512);  // clamped to what the CPU has
  EXPECT_EQ(active_isa(), detected_isa());
  force_isa(Isa::kScalar);
  EXPECT_EQ(active_isa(), Isa::kScalar);
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16")) {
    EXPECT_EQ(detected_isa(), Isa::kAvx512);
  }
#endif
}

TEST(KernelsMatmul, SupportedTypes) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0})
    EXPECT_TRUE(matmul_supports(t));
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) EXPECT_TRUE(matmul_supports(t));
  for (DType t : {DType::Q4_1, DType::Q2_K, DType::Q3_K, DType::I8}) EXPECT_FALSE(matmul_supports(t));
}

TEST(KernelsMatmul, FloatTypesMatchReference) {
  IsaRestorer restore;
  const int64_t n_ins[] = {1, 3, 7, 16, 31, 32, 33, 64, 100, 257, 1061, 2085};
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (DType type : {DType::F32, DType::F16, DType::BF16}) {
      for (int64_t n_in : n_ins) {
        for (int64_t n_out : {1, 21}) {
          const Weights w = make_weights(type, n_in, n_out, static_cast<uint32_t>(n_in * 131 + n_out));
          for (int64_t n_tokens : {1, 2, 3, 5, 8}) {
            std::mt19937 rng(static_cast<uint32_t>(n_tokens));
            const std::vector<float> x = random_floats(rng, n_tokens * n_in);
            std::vector<float> y(static_cast<size_t>(n_tokens * n_out), NAN);
            matmul(w.tensor, x.data(), n_tokens, y.data(), nullptr);
            expect_matmul_close(w, x, n_tokens, y,
                                std::string(isa_name(isa)) + " " + dtype_name(type) + " n_in " +
                                    std::to_string(n_in) + " n_out " + std::to_string(n_out) + " n_tokens " +
                                    std::to_string(n_tokens));
          }
        }
      }
    }
  }
}

TEST(KernelsMatmul, QuantizedTypesMatchReference) {
  IsaRestorer restore;
  const int64_t n_ins[] = {32, 64, 96, 256, 1024, 1056, 2080};
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (DType type : {DType::Q8_0, DType::Q4_0}) {
      for (int64_t n_in : n_ins) {
        for (int64_t n_out : {1, 3, 21}) {
          const Weights w = make_weights(type, n_in, n_out, static_cast<uint32_t>(n_in * 7 + n_out));
          for (int64_t n_tokens : {1, 2, 3, 5, 8}) {
            std::mt19937 rng(static_cast<uint32_t>(100 + n_tokens));
            const std::vector<float> x = random_floats(rng, n_tokens * n_in);
            std::vector<float> y(static_cast<size_t>(n_tokens * n_out), NAN);
            matmul(w.tensor, x.data(), n_tokens, y.data(), nullptr);
            expect_matmul_close(w, x, n_tokens, y,
                                std::string(isa_name(isa)) + " " + dtype_name(type) + " n_in " +
                                    std::to_string(n_in) + " n_out " + std::to_string(n_out) + " n_tokens " +
                                    std::to_string(n_tokens));
          }
        }
      }
    }
  }
}

TEST(KernelsMatmul, PaddedRowStride) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (DType type : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_0}) {
      const Weights w = make_weights(type, 96, 13, 5, /*row_pad=*/40);
      std::mt19937 rng(9);
      const std::vector<float> x = random_floats(rng, 3 * 96);
      std::vector<float> y(3 * 13);
      matmul(w.tensor, x.data(), 3, y.data(), nullptr);
      expect_matmul_close(w, x, 3, y, std::string(isa_name(isa)) + " padded " + dtype_name(type));
    }
  }
}

// The determinism contract: the thread count never changes a result, not even in the last bit.
TEST(KernelsMatmul, ThreadCountInvariant) {
  IsaRestorer restore;
  ThreadPool one(1);
  ThreadPool two(2);
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
      const int64_t n_in = dtype_traits(type).block_size > 1 ? 1056 : 1061;
      const int64_t n_out = 203;
      const Weights w = make_weights(type, n_in, n_out, 77);
      for (int64_t n_tokens : {1, 6}) {
        std::mt19937 rng(3);
        const std::vector<float> x = random_floats(rng, n_tokens * n_in);
        std::vector<float> y0(static_cast<size_t>(n_tokens * n_out)), y1 = y0, y2 = y0;
        matmul(w.tensor, x.data(), n_tokens, y0.data(), nullptr);
        matmul(w.tensor, x.data(), n_tokens, y1.data(), &one);
        matmul(w.tensor, x.data(), n_tokens, y2.data(), &two);
        EXPECT_EQ(0, std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(float)))
            << isa_name(isa) << " " << dtype_name(type) << " n_tokens " << n_tokens;
        EXPECT_EQ(0, std::memcmp(y0.data(), y2.data(), y0.size() * sizeof(float)))
            << isa_name(isa) << " " << dtype_name(type) << " n_tokens " << n_tokens;
        expect_matmul_close(w, x, n_tokens, y2,
                            std::string(isa_name(isa)) + " 2 threads " + dtype_name(type));
      }
    }
  }
}

// A token's result does not depend on the tokens batched with it (cpu_kernels.h): batched decode
// and prompt processing give the same bits as one token at a time.
TEST(KernelsMatmul, BatchInvariant) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (DType type : {DType::F32, DType::BF16, DType::Q8_0, DType::Q4_0}) {
      const int64_t n_in = dtype_traits(type).block_size > 1 ? 2080 : 2085;
      const int64_t n_out = 37;
      const int64_t n_tokens = 7;
      const Weights w = make_weights(type, n_in, n_out, 11);
      std::mt19937 rng(4);
      const std::vector<float> x = random_floats(rng, n_tokens * n_in);
      std::vector<float> batched(static_cast<size_t>(n_tokens * n_out));
      matmul(w.tensor, x.data(), n_tokens, batched.data(), nullptr);
      for (int64_t t = 0; t < n_tokens; ++t) {
        std::vector<float> single(static_cast<size_t>(n_out));
        matmul(w.tensor, x.data() + t * n_in, 1, single.data(), nullptr);
        EXPECT_EQ(0, std::memcmp(single.data(), batched.data() + t * n_out, single.size() * sizeof(float)))
            << isa_name(isa) << " " << dtype_name(type) << " token " << t;
      }
    }
  }
}

TEST(KernelsMatmul, EmptyInputsGiveZeros) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    const Weights w = make_weights(DType::F32, 0, 5, 1);
    std::vector<float> y(2 * 5, NAN);
    const float x = 0.0f;
    matmul(w.tensor, &x, 2, y.data(), nullptr);
    for (float v : y) EXPECT_EQ(v, 0.0f) << isa_name(isa);
  }
}

TEST(KernelsMatmul, RejectsBadInput) {
  std::vector<uint8_t> data(1024);
  Tensor w;
  w.name = "bad";
  w.n_dims = 2;
  w.ne[0] = 32;
  w.ne[1] = 2;
  w.type = DType::Q3_K;
  w.nb[1] = 512;
  w.nb[2] = w.nb[3] = 1024;
  w.data = data.data();
  std::vector<float> x(64), y(4);
  EXPECT_THROW(matmul(w, x.data(), 1, y.data(), nullptr), Error);  // unsupported type
  w.type = DType::Q8_0;
  w.ne[0] = 33;
  EXPECT_THROW(matmul(w, x.data(), 1, y.data(), nullptr), Error);  // not whole blocks
  w.ne[0] = 32;
  w.nb[1] = 8;
  EXPECT_THROW(matmul(w, x.data(), 1, y.data(), nullptr), Error);  // rows overlap
}

TEST(KernelsRmsNorm, MatchesReference) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (int64_t n : {1, 3, 7, 16, 31, 32, 33, 64, 100, 257, 4096}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      const std::vector<float> x = random_floats(rng, n, -3.0f, 3.0f);
      const std::vector<float> weight = random_floats(rng, n, 0.5f, 1.5f);
      for (bool with_weight : {false, true}) {
        const float* wp = with_weight ? weight.data() : nullptr;
        std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
        ref::rms_norm(x.data(), wp, n, 1e-6f, want.data());
        rms_norm(x.data(), wp, n, 1e-6f, got.data());
        std::vector<float> in_place = x;
        rms_norm(in_place.data(), wp, n, 1e-6f, in_place.data());
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i]) + 1e-6) << isa_name(isa) << " n " << n;
          EXPECT_EQ(in_place[i], got[i]) << isa_name(isa) << " n " << n;
        }
      }
    }
  }
}

TEST(KernelsSoftmax, MatchesReference) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (int64_t n : {1, 3, 7, 16, 31, 32, 33, 64, 100, 257, 4099}) {
      for (float spread : {1.0f, 40.0f}) {
        std::mt19937 rng(static_cast<uint32_t>(n));
        std::vector<float> want = random_floats(rng, n, -spread, spread);
        if (n > 3) want[2] = want[n - 1] = spread + 1.0f;  // a tie at the maximum, and one in the tail
        std::vector<float> got = want;
        ref::softmax(want.data(), n);
        softmax(got.data(), n);
        double sum = 0.0;
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_NEAR(got[i], want[i], 1e-6 * want[i] + 1e-12) << isa_name(isa) << " n " << n;
          sum += got[i];
        }
        EXPECT_NEAR(sum, 1.0, 1e-5);
      }
    }
  }
}

TEST(KernelsSwiglu, MatchesReference) {
  IsaRestorer restore;
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (int64_t n : {1, 3, 7, 16, 31, 32, 33, 64, 100, 257, 1000}) {
      std::mt19937 rng(static_cast<uint32_t>(n));
      std::vector<float> gate = random_floats(rng, n, -20.0f, 20.0f);
      const std::vector<float> up = random_floats(rng, n, -2.0f, 2.0f);
      const float specials[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 87.5f, -87.5f, 88.5f, -88.5f, 100.0f, -100.0f};
      for (int64_t i = 0; i < n && i < 10; ++i) gate[i * 7 % n] = specials[i];
      std::vector<float> want(static_cast<size_t>(n)), got(static_cast<size_t>(n));
      ref::swiglu(gate.data(), up.data(), want.data(), n);
      swiglu(gate.data(), up.data(), got.data(), n);
      std::vector<float> alias_gate = gate, alias_up = up;
      swiglu(alias_gate.data(), up.data(), alias_gate.data(), n);
      swiglu(gate.data(), alias_up.data(), alias_up.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_NEAR(got[i], want[i], 1e-6 * std::fabs(want[i]) + 1e-30)
            << isa_name(isa) << " gate " << gate[i] << " up " << up[i];
        EXPECT_EQ(alias_gate[i], got[i]);
        EXPECT_EQ(alias_up[i], got[i]);
      }
    }
  }
}

// An independent double-precision rope: angle of pair i = pos * base^(-2i/n_rot), YaRN per
// ggml_rope_yarn_corr_dims and rope_yarn.
std::vector<float> rope_double(const std::vector<float>& x, int64_t n_heads, int64_t head_dim, int64_t pos,
                               const RopeParams& p, std::vector<double>* dim_theta) {
  std::vector<float> out = x;
  const double n_rot = static_cast<double>(p.n_rot);
  auto corr_dim = [&](double beta) {
    return n_rot * std::log(p.n_ctx_orig / (beta * 2 * M_PI)) / (2 * std::log(double(p.freq_base)));
  };
  const double low = std::max(0.0, std::floor(corr_dim(p.beta_fast)));
  const double high = std::min(n_rot - 1, std::ceil(corr_dim(p.beta_slow)));
  dim_theta->assign(static_cast<size_t>(head_dim), 0.0);
  for (int64_t i = 0; i < p.n_rot / 2; ++i) {
    const double extrap = double(pos) * std::pow(double(p.freq_base), -2.0 * double(i) / n_rot);
    double theta = p.freq_scale * extrap;
    double mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const double y = (double(i) - low) / std::max(0.001, high - low);
      const double mix = (1.0 - std::min(1.0, std::max(0.0, y))) * p.ext_factor;
      theta = theta * (1 - mix) + extrap * mix;
      mscale *= 1.0 + 0.1 * std::log(1.0 / p.freq_scale);
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t a = h * head_dim + (p.neox ? i : 2 * i);
      const int64_t b = h * head_dim + (p.neox ? i + p.n_rot / 2 : 2 * i + 1);
      (*dim_theta)[a - h * head_dim] = (*dim_theta)[b - h * head_dim] = extrap;
      out[a] = static_cast<float>((x[a] * std::cos(theta) - x[b] * std::sin(theta)) * mscale);
      out[b] = static_cast<float>((x[a] * std::sin(theta) + x[b] * std::cos(theta)) * mscale);
    }
  }
  return out;
}

TEST(KernelsRope, MatchesIndependentMath) {
  IsaRestorer restore;
  struct Case {
    int64_t head_dim, n_rot;
    bool neox, yarn;
  };
  const Case cases[] = {{64, 64, false, false}, {64, 64, true, false}, {64, 32, false, false},
                        {128, 96, true, false}, {64, 64, false, true}, {192, 64, true, true}};
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (const Case& c : cases) {
      RopeParams p;
      p.n_rot = c.n_rot;
      p.neox = c.neox;
      if (c.yarn) {  // DeepSeek-V3 / R1 settings
        p.freq_scale = 1.0f / 40.0f;
        p.ext_factor = 1.0f;
        p.attn_factor = 1.0f;
        p.n_ctx_orig = 4096;
      }
      for (int64_t pos : {0, 1, 17, 1000, 100000}) {
        const int64_t n_heads = 3;
        std::mt19937 rng(static_cast<uint32_t>(pos + c.head_dim));
        const std::vector<float> x = random_floats(rng, n_heads * c.head_dim);
        std::vector<double> dim_theta;
        const std::vector<float> want = rope_double(x, n_heads, c.head_dim, pos, p, &dim_theta);
        std::vector<float> got = x, ref_out = x;
        rope(got.data(), n_heads, c.head_dim, pos, p);
        ref::rope(ref_out.data(), n_heads, c.head_dim, pos, p);
        for (int64_t i = 0; i < n_heads * c.head_dim; ++i) {
          // Float angles: theta_scale^k by repeated multiplication loses ~k ulps of the angle;
          // |x| <= 1 and the YaRN magnitude scale is below 1.5.
          const double tol = 3.0 * (dim_theta[i % c.head_dim] * (c.n_rot / 2 + 2) * 1.2e-7 + 1e-6);
          EXPECT_EQ(got[i], ref_out[i]);
          EXPECT_NEAR(got[i], want[i], tol) << isa_name(isa) << " dim " << i % c.head_dim << " pos " << pos
                                            << " neox " << c.neox << " yarn " << c.yarn;
          if (i % c.head_dim >= c.n_rot) {
            EXPECT_EQ(got[i], x[i]) << "dims past n_rot stay untouched";
          }
        }
      }
    }
  }
}

TEST(KernelsRope, KnownValuesAndYarnCorrDims) {
  RopeParams p;
  p.n_rot = 2;
  float x[2] = {1.0f, 0.0f};
  rope(x, 1, 2, 1, p);  // one pair, angle = pos = 1 rad
  EXPECT_FLOAT_EQ(x[0], std::cos(1.0f));
  EXPECT_FLOAT_EQ(x[1], std::sin(1.0f));
  // DeepSeek-V3: rope dims 64, original context 4096, theta 1e4, beta 32 / 1.
  float dims[2];
  ref::rope_yarn_corr_dims(64, 4096, 10000.0f, 32.0f, 1.0f, dims);
  EXPECT_EQ(dims[0], 10.0f);
  EXPECT_EQ(dims[1], 23.0f);
}

TEST(KernelsQuantize, Q8_0RoundTrip) {
  std::mt19937 rng(1);
  const int64_t n = 32 * 40;
  std::vector<float> x = random_floats(rng, n, -5.0f, 5.0f);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);   // a zero block
  for (int64_t i = 96; i < 128; ++i) x[i] *= 1e-3f;  // a small one
  std::vector<BlockQ8_0> q(static_cast<size_t>(n / 32));
  std::vector<float> back(static_cast<size_t>(n));
  quantize_row(DType::Q8_0, x.data(), q.data(), n);
  dequantize_row(DType::Q8_0, q.data(), back.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = fp16_to_fp32(q[b].d);
    // d/2 from rounding q, plus up to 127 * (half an fp16 ulp of d) from storing d as fp16.
    const float bound = 0.5f * d + 127.0f * d * 0x1p-11f + 1e-7f;
    for (int64_t j = 0; j < 32; ++j)
      EXPECT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound) << b << " " << j;
  }
  EXPECT_EQ(q[2].d, 0);
  for (int8_t v : q[2].qs) EXPECT_EQ(v, 0);
  // Known block: x = j - 16: amax 16, d = 16/127, q = round((j - 16) * 127/16).
  std::vector<float> ramp(32);
  for (int j = 0; j < 32; ++j) ramp[j] = static_cast<float>(j - 16);
  BlockQ8_0 rb;
  quantize_row(DType::Q8_0, ramp.data(), &rb, 32);
  EXPECT_EQ(rb.d, fp32_to_fp16(16.0f / 127.0f));
  EXPECT_EQ(rb.qs[0], -127);
  EXPECT_EQ(rb.qs[16], 0);
  EXPECT_EQ(rb.qs[31], 119);
}

TEST(KernelsQuantize, Q4_0RoundTripAndLayout) {
  std::mt19937 rng(2);
  const int64_t n = 32 * 40;
  std::vector<float> x = random_floats(rng, n, -5.0f, 5.0f);
  std::fill(x.begin(), x.begin() + 32, 0.0f);
  std::vector<BlockQ4_0> q(static_cast<size_t>(n / 32));
  std::vector<float> back(static_cast<size_t>(n));
  quantize_row(DType::Q4_0, x.data(), q.data(), n);
  dequantize_row(DType::Q4_0, q.data(), back.data(), n);
  for (int64_t b = 0; b < n / 32; ++b) {
    const float d = std::fabs(fp16_to_fp32(q[b].d));
    const float fp16_err = 8.0f * d * 0x1p-11f + 1e-7f;
    for (int64_t j = 0; j < 32; ++j) {
      const int nib = j < 16 ? (q[b].qs[j] & 15) : (q[b].qs[j - 16] >> 4);
      // The scale maps the extreme value to -8; values beyond +7.5 on the other side clamp to 15.
      const float bound = (nib == 15 ? d : 0.5f * d) + fp16_err;
      EXPECT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), bound) << b << " " << j;
    }
  }
  EXPECT_EQ(fp16_to_fp32(q[0].d), 0.0f);  // -0 as in ggml: d = max / -8
  for (uint8_t v : q[0].qs) EXPECT_EQ(v, 0x88);
  // Known block: x[j] = ((j % 16) - 8) / 2: d = 0.5, q[j] = j % 16, qs[j] = q[j] | q[j + 16] << 4.
  std::vector<float> ramp(32);
  for (int j = 0; j < 32; ++j) ramp[j] = static_cast<float>(j % 16 - 8) * 0.5f;
  BlockQ4_0 rb;
  quantize_row(DType::Q4_0, ramp.data(), &rb, 32);
  EXPECT_EQ(fp16_to_fp32(rb.d), 0.5f);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(rb.qs[j], j | (j << 4));
  float rt[32];
  dequantize_row(DType::Q4_0, &rb, rt, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(rt[j], ramp[j]);
}

TEST(KernelsQuantize, PlainTypesAreExact) {
  std::mt19937 rng(3);
  const int64_t n = 1001;
  std::vector<float> x = random_floats(rng, n, -70000.0f, 70000.0f);
  x[0] = 1e-6f;  // an fp16 subnormal
  x[1] = -0.0f;
  std::vector<uint16_t> h(static_cast<size_t>(n));
  std::vector<float> back(static_cast<size_t>(n));
  quantize_row(DType::F16, x.data(), h.data(), n);
  dequantize_row(DType::F16, h.data(), back.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i], fp32_to_fp16(x[i]));
    EXPECT_EQ(back[i], fp16_to_fp32(h[i]));
  }
  quantize_row(DType::BF16, x.data(), h.data(), n);
  dequantize_row(DType::BF16, h.data(), back.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(h[i], fp32_to_bf16(x[i]));
    EXPECT_EQ(back[i], bf16_to_fp32(h[i]));
  }
  quantize_row(DType::F32, x.data(), back.data(), n);
  EXPECT_EQ(0, std::memcmp(back.data(), x.data(), x.size() * sizeof(float)));
  EXPECT_THROW(quantize_row(DType::Q3_K, x.data(), h.data(), 256), Error);
  EXPECT_THROW(dequantize_row(DType::Q8_0, h.data(), back.data(), 31), Error);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) float hw_half_to_float(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t hw_float_to_half(float f) { return _cvtss_sh(f, 0); }
#endif

TEST(KernelsFp16, AllHalvesRoundTrip) {
#if defined(__x86_64__)
  const bool has_f16c = __builtin_cpu_supports("f16c");
#else
  const bool has_f16c = false;
#endif
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = fp16_to_fp32(h);
    const bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      EXPECT_EQ(fp32_to_fp16(f), h | 0x0200) << h;  // quieted, sign and payload kept
    } else {
      EXPECT_EQ(fp32_to_fp16(f), h) << h;
    }
#if defined(__x86_64__)
    if (has_f16c && !nan) {
      uint32_t a, b;
      const float hw = hw_half_to_float(h);
      std::memcpy(&a, &f, 4);
      std::memcpy(&b, &hw, 4);
      EXPECT_EQ(a, b) << h;
    }
#endif
  }
#if defined(__x86_64__)
  if (has_f16c) {  // round-to-nearest-even on random bit patterns agrees with the hardware
    std::mt19937 rng(5);
    for (int i = 0; i < 1000000; ++i) {
      uint32_t u = rng();
      float f;
      std::memcpy(&f, &u, 4);
      if (std::isnan(f)) continue;
      ASSERT_EQ(fp32_to_fp16(f), hw_float_to_half(f)) << std::hex << u;
    }
  }
#endif
}

}  // namespace
}  // namespace moe::kernels

namespace moe::kernels {
namespace {

// Attention's weighted sum of rows on every ISA, odd sizes and strides, against the reference.
TEST(KernelsWeightedRows, MatchesReference) {
  IsaRestorer restore;
  std::mt19937 rng(21);
  for (Isa isa : available_isas()) {
    force_isa(isa);
    for (int64_t n_out : {1, 3, 4, 9}) {
      for (int64_t n : {1, 15, 16, 33, 128, 512}) {
        for (int64_t n_rows : {1, 2, 7, 100}) {
          const int64_t p_stride = n_rows + 3, row_stride = n + 5, out_stride = n + 2;
          const std::vector<float> p = random_floats(rng, n_out * p_stride, 0.0f, 1.0f);
          const std::vector<float> rows = random_floats(rng, n_rows * row_stride);
          std::vector<float> got(static_cast<size_t>(n_out * out_stride), 7.0f), want = got;
          weighted_rows(p.data(), p_stride, n_out, rows.data(), row_stride, n_rows, got.data(), out_stride,
                        n);
          ref::weighted_rows(p.data(), p_stride, n_out, rows.data(), row_stride, n_rows, want.data(),
                             out_stride, n);
          for (int64_t h = 0; h < n_out; ++h)
            for (int64_t d = 0; d < out_stride; ++d) {
              const size_t i = static_cast<size_t>(h * out_stride + d);
              if (d >= n) {
                ASSERT_EQ(got[i], 7.0f) << "wrote past n";
                continue;
              }
              double mag = 0.0;
              for (int64_t j = 0; j < n_rows; ++j)
                mag += std::fabs(double(p[h * p_stride + j]) * rows[j * row_stride + d]);
              ASSERT_LE(std::fabs(got[i] - want[i]), 1e-6 * mag + 1e-7)
                  << isa_name(isa) << " n_out " << n_out << " n " << n << " rows " << n_rows;
            }
        }
      }
    }
  }
}

}  // namespace
}  // namespace moe::kernels
