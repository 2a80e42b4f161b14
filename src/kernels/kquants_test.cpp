// K-quants (Q4_K, Q5_K, Q6_K): round-trip error on random and real weights, the block layouts
// against hand-made blocks, matmul on every ISA against the scalar reference, and bit-exactness
// with ggml's own quantize_row_q*_K_ref / dequantize_row_q*_K (the llama.cpp peer's library).
#include "kernels/ref/kquants.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/isa_restorer_test.h"
#include "kernels/kernels.h"
#include "kernels/ref/quant_dot.h"
#include "kernels/ref/ref_kernels.h"
#include "testdata.h"

namespace moe::kernels {
namespace {

constexpr DType kKTypes[] = {DType::Q4_K, DType::Q5_K, DType::Q6_K};

// The super-block scale d is fp16 (ggml's format): for a block with max |x| below ~0.25 (Q6_K) it
// is an fp16 subnormal with fewer bits, so the error gets an absolute floor of one subnormal step
// (2^-24) times the largest |sub-scale * level| (127 * 32 for Q6_K, 63 * 31 + 63 * 63 for Q5_K).
// Measured: Q6_K on values ~3e-4 errs by 1e-4 (d = 6e-8), exactly as ggml does.
constexpr double kFp16Floor = 0x1p-24 * 6000.0;

struct RoundTrip {
  double rel_rms = 0;  // sqrt(sum err^2 / sum x^2)
  double max_rel = 0;  // max |err| / max |x| of its super-block
};

RoundTrip round_trip(DType t, const std::vector<float>& x, std::vector<float>* back_out = nullptr) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(row_bytes(t, n));
  std::vector<float> back(x.size());
  quantize_row(t, x.data(), q.data(), n);
  dequantize_row(t, q.data(), back.data(), n);
  RoundTrip r;
  double se = 0, sx = 0;
  for (int64_t b = 0; b < n / kQK_K; ++b) {
    float amax = 0;
    for (int64_t i = b * kQK_K; i < (b + 1) * kQK_K; ++i) amax = std::max(amax, std::fabs(x[i]));
    for (int64_t i = b * kQK_K; i < (b + 1) * kQK_K; ++i) {
      const double e = double(back[i]) - x[i];
      se += e * e;
      sx += double(x[i]) * x[i];
      if (amax > 0)
        r.max_rel = std::max(r.max_rel, std::max(0.0, std::fabs(e) - kFp16Floor) / amax);
      else
        EXPECT_EQ(back[i], 0.0f) << dtype_name(t) << " zero block " << b;
    }
  }
  r.rel_rms = sx > 0 ? std::sqrt(se / sx) : 0;
  if (back_out) *back_out = back;
  return r;
}

// Per-element bound relative to the super-block's max |x| and the rms bound, per type. A sub-block
// whose range is far below the super-block's largest one gets a small 6-bit scale, so the
// per-element bound is loose; the rms bound is the tight one.
struct Bounds {
  double rel_rms, max_rel;
};
Bounds bounds(DType t) {
  switch (t) {
    case DType::Q4_K:
      return {0.10, 0.10};
    case DType::Q5_K:
      return {0.05, 0.05};
    default:
      return {0.025, 0.03};
  }
}

TEST(KQuant, RandomRoundTrip) {
  std::mt19937 rng(7);
  const int64_t n = kQK_K * 32;
  std::vector<float> x(n);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  std::fill(x.begin(), x.begin() + kQK_K, 0.0f);                                   // an all-zero super-block
  std::fill(x.begin() + 2 * kQK_K + 32, x.begin() + 2 * kQK_K + 64, 0.0f);         // a zero sub-block
  for (int64_t i = 3 * kQK_K; i < 4 * kQK_K; ++i) x[i] = std::fabs(x[i]) + 5.0f;   // all positive, offset
  for (int64_t i = 4 * kQK_K; i < 5 * kQK_K; ++i) x[i] = -std::fabs(x[i]) - 5.0f;  // all negative
  for (int64_t i = 5 * kQK_K; i < 6 * kQK_K; ++i) x[i] *= 1e-4f;                   // small values
  for (int64_t i = 6 * kQK_K; i < 7 * kQK_K; ++i) x[i] *= 1e3f;                    // large values
  for (DType t : kKTypes) {
    const RoundTrip r = round_trip(t, x);
    std::printf("  %s random: rel rms %.5f, max |err|/amax %.5f\n", dtype_name(t), r.rel_rms, r.max_rel);
    EXPECT_LT(r.rel_rms, bounds(t).rel_rms) << dtype_name(t);
    EXPECT_LT(r.max_rel, bounds(t).max_rel) << dtype_name(t);
  }
}

TEST(KQuant, LargeDynamicRangeRoundTrip) {
  // Sub-blocks spanning 1e-3 .. 1e3 inside one super-block: the big ones stay accurate; the small
  // ones may collapse towards zero (6-bit scales relative to the largest), never beyond their size.
  std::mt19937 rng(8);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(kQK_K * 4);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = u(rng) * std::pow(10.0f, float(int(i / 32 % 8) - 3) * 6.0f / 7.0f);
  for (DType t : kKTypes) {
    std::vector<float> back;
    const RoundTrip r = round_trip(t, x, &back);
    std::printf("  %s dynamic range: rel rms %.5f, max |err|/amax %.5f\n", dtype_name(t), r.rel_rms,
                r.max_rel);
    EXPECT_LT(r.rel_rms, bounds(t).rel_rms) << dtype_name(t);
    for (size_t i = 0; i < x.size(); ++i) {
      float sub_amax = 0;
      for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) sub_amax = std::max(sub_amax, std::fabs(x[j]));
      ASSERT_LE(std::fabs(back[i] - x[i]), 1.01f * sub_amax + 1e-6f) << dtype_name(t) << " " << i;
      ASSERT_TRUE(std::isfinite(back[i]));
    }
  }
}

TEST(KQuant, RealWeightsRoundTrip) {
  const auto file = GgufFile::open(test::testdata("models/stories260K.gguf"));
  for (DType t : kKTypes) {
    double se = 0, sx = 0;
    int n_tensors = 0;
    for (const GgufTensorInfo& info : file->tensors()) {
      if (info.type != DType::F32 || info.n_dims < 2) continue;
      const int64_t n = info.ne[0] * info.ne[1] * info.ne[2] * info.ne[3];
      const int64_t whole = n / kQK_K * kQK_K;  // rows of 64 are quantized as one long row
      if (whole == 0) continue;
      const float* data = reinterpret_cast<const float*>(file->tensor_data(info));
      std::vector<float> x(data, data + whole);
      std::vector<float> back;
      const RoundTrip r = round_trip(t, x, &back);
      EXPECT_LT(r.rel_rms, bounds(t).rel_rms) << dtype_name(t) << " " << info.name;
      for (int64_t i = 0; i < whole; ++i) {
        se += (double(back[i]) - x[i]) * (double(back[i]) - x[i]);
        sx += double(x[i]) * x[i];
      }
      ++n_tensors;
    }
    EXPECT_GT(n_tensors, 5);
    std::printf("  %s stories260K (%d tensors): rel rms %.5f\n", dtype_name(t), n_tensors,
                std::sqrt(se / sx));
  }
}

// The value of element i of a hand-made block, from the layout as documented in dtype.h.
float q4k_expected(const BlockQ4_K& b, int i, bool five_bit, const uint8_t* qh) {
  const int j = i / 32;  // sub-block
  int sc, m;
  if (j < 4) {
    sc = b.scales[j] & 63;
    m = b.scales[j + 4] & 63;
  } else {
    sc = (b.scales[j + 4] & 15) | ((b.scales[j - 4] >> 6) << 4);
    m = (b.scales[j + 4] >> 4) | ((b.scales[j] >> 6) << 4);
  }
  const int g = i / 64, k = i % 64 / 32, l = i % 32;
  int q = k == 0 ? b.qs[32 * g + l] & 15 : b.qs[32 * g + l] >> 4;
  if (five_bit && (qh[l] >> (2 * g + k) & 1)) q += 16;
  return fp16_to_fp32(b.d) * float(sc) * float(q) - fp16_to_fp32(b.dmin) * float(m);
}

TEST(KQuant, HandMadeBlocksMatchLayout) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    BlockQ5_K b5;
    b5.d = fp32_to_fp16(0.01f * float(trial + 1));
    b5.dmin = fp32_to_fp16(0.003f * float(trial + 2));
    for (uint8_t& v : b5.scales) v = static_cast<uint8_t>(rng());
    for (uint8_t& v : b5.qh) v = static_cast<uint8_t>(rng());
    for (uint8_t& v : b5.qs) v = static_cast<uint8_t>(rng());
    BlockQ4_K b4;
    b4.d = b5.d;
    b4.dmin = b5.dmin;
    std::memcpy(b4.scales, b5.scales, 12);
    std::memcpy(b4.qs, b5.qs, sizeof(b4.qs));
    float y4[kQK_K], y5[kQK_K];
    dequantize_row(DType::Q4_K, &b4, y4, kQK_K);
    dequantize_row(DType::Q5_K, &b5, y5, kQK_K);
    for (int i = 0; i < kQK_K; ++i) {
      ASSERT_EQ(y4[i], q4k_expected(b4, i, false, nullptr)) << i;
      ASSERT_EQ(y5[i], q4k_expected(b4, i, true, b5.qh)) << i;
    }

    BlockQ6_K b6;
    for (uint8_t& v : b6.ql) v = static_cast<uint8_t>(rng());
    for (uint8_t& v : b6.qh) v = static_cast<uint8_t>(rng());
    for (int8_t& v : b6.scales) v = static_cast<int8_t>(rng());
    b6.d = fp32_to_fp16(-0.002f * float(trial + 1));
    float y6[kQK_K];
    dequantize_row(DType::Q6_K, &b6, y6, kQK_K);
    for (int i = 0; i < kQK_K; ++i) {
      const int h = i / 128, k = i % 128 / 32, l = i % 32;
      const uint8_t lo = b6.ql[64 * h + l + 32 * (k & 1)];
      const int q = ((k < 2 ? lo & 15 : lo >> 4) | ((b6.qh[32 * h + l] >> (2 * k) & 3) << 4)) - 32;
      ASSERT_EQ(y6[i], fp16_to_fp32(b6.d) * float(b6.scales[i / 16]) * float(q)) << i;
    }
  }
}

TEST(KQuant, KnownQuantizedBlocks) {
  // Constant positive block: min 0 clamps, every value the same level, reconstruction close.
  std::vector<float> c(kQK_K, 2.0f);
  BlockQ4_K q4;
  quantize_row(DType::Q4_K, c.data(), &q4, kQK_K);
  float back[kQK_K];
  dequantize_row(DType::Q4_K, &q4, back, kQK_K);
  for (float v : back) EXPECT_NEAR(v, 2.0f, 2.0f * 0x1p-10f * 2);
  // All zeros: Q6_K writes an all-zero block, Q4_K/Q5_K zero scales.
  std::vector<float> z(kQK_K, 0.0f);
  BlockQ6_K q6;
  std::memset(&q6, 0xAB, sizeof q6);
  quantize_row(DType::Q6_K, z.data(), &q6, kQK_K);
  const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&q6);
  for (size_t i = 0; i < sizeof q6; ++i) EXPECT_EQ(bytes[i], 0) << i;
  quantize_row(DType::Q4_K, z.data(), &q4, kQK_K);
  EXPECT_EQ(q4.d, 0);
  EXPECT_EQ(q4.dmin, 0);
  // Q6_K of a ramp 0..255 scaled: symmetric levels -32..31, the largest magnitude gets scale -128.
  std::vector<float> ramp(kQK_K);
  for (int i = 0; i < kQK_K; ++i) ramp[i] = float(i - 128) / 128.0f;
  quantize_row(DType::Q6_K, ramp.data(), &q6, kQK_K);
  dequantize_row(DType::Q6_K, &q6, back, kQK_K);
  for (int i = 0; i < kQK_K; ++i) EXPECT_NEAR(back[i], ramp[i], 0.02f) << i;
  EXPECT_EQ(ref::nearest_int(2.5f), 2);  // half to even
  EXPECT_EQ(ref::nearest_int(3.5f), 4);
  EXPECT_EQ(ref::nearest_int(-2.5f), -2);
  EXPECT_THROW(quantize_row(DType::Q4_K, c.data(), &q4, 128), Error);  // not a whole super-block
}

TEST(KQuant, MatmulEveryIsaEqualsReference) {
  IsaRestorer restore;
  ThreadPool two(2);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (DType t : kKTypes) {
    EXPECT_TRUE(matmul_supports(t));
    for (int64_t n_in : {256, 512, 2304}) {
      const int64_t n_out = 37;
      const size_t rb = row_bytes(t, n_in);
      std::vector<uint8_t> bytes(rb * n_out);
      std::vector<float> values(n_in * n_out), src(n_in);
      for (int64_t r = 0; r < n_out; ++r) {
        for (float& v : src) v = u(rng);
        if (r % 5 == 0) std::fill(src.begin(), src.begin() + 256, 0.0f);
        quantize_row(t, src.data(), bytes.data() + r * rb, n_in);
        dequantize_row(t, bytes.data() + r * rb, values.data() + r * n_in, n_in);
      }
      Tensor w;
      w.name = "w";
      w.type = t;
      w.n_dims = 2;
      w.ne[0] = n_in;
      w.ne[1] = n_out;
      set_contiguous_strides(w);
      w.data = bytes.data();
      for (int64_t n_tokens : {1, 3, 8}) {
        std::vector<float> x(n_in * n_tokens);
        for (float& v : x) v = u(rng);
        // The integer reference (ref/quant_dot.h), and it against the dequantized weights times
        // the quantized activations in double.
        std::vector<int8_t> qs(n_in * n_tokens);
        std::vector<float> d(n_tokens * (n_in / 256));
        std::vector<int32_t> aux(n_tokens * (n_in / 16));
        ref::quantize_acts(DType::Q8_K, x.data(), n_tokens, n_in, qs.data(), d.data(), aux.data());
        std::vector<float> want(n_out * n_tokens);
        const ref::QMatmulArgs qa{
            bytes.data(), rb,
            false,        ref::QuantizedActsView{qs.data(), d.data(), aux.data(), n_in, n_tokens},
            want.data(),  n_out};
        ref::qmatmul_rows(t, qa, 0, n_out);
        for (int64_t k = 0; k < n_tokens; ++k)
          for (int64_t r = 0; r < n_out; ++r) {
            double s = 0, mag = 0;
            for (int64_t i = 0; i < n_in; ++i) {
              const double p =
                  double(values[r * n_in + i]) * d[k * (n_in / 256) + i / 256] * qs[k * n_in + i];
              s += p;
              mag += std::fabs(p);
            }
            ASSERT_LE(std::fabs(want[k * n_out + r] - s), 1e-5 * mag + 1e-6);
          }
        for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
          if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
          force_isa(isa);
          for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &two}) {
            std::vector<float> y(n_out * n_tokens, NAN);
            matmul(w, x.data(), n_tokens, y.data(), pool);
            EXPECT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * sizeof(float)))
                << isa_name(isa) << " " << dtype_name(t) << " n_in " << n_in << " n_tokens " << n_tokens;
          }
        }
      }
    }
  }
}

// Against ggml itself: libggml-base.so of the llama.cpp peer (.cache/peers, node-llama-cpp)
// exports quantize_row_q*_K_ref and dequantize_row_q*_K; our bytes and floats must be identical.
TEST(KQuantGgml, BitExactWithGgml) {
  const std::string lib =
      std::string(MOE_SOURCE_DIR) +
      "/.cache/peers/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so";
  if (!std::filesystem::exists(lib))
    GTEST_SKIP() << "llama.cpp peer not installed (scripts/install-peers.sh)";
  void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << dlerror();
  using QuantFn = void (*)(const float*, void*, int64_t);
  using DequantFn = void (*)(const void*, float*, int64_t);
  struct Fns {
    DType type;
    const char* quant;
    const char* dequant;
  };
  const Fns fns[] = {{DType::Q4_K, "quantize_row_q4_K_ref", "dequantize_row_q4_K"},
                     {DType::Q5_K, "quantize_row_q5_K_ref", "dequantize_row_q5_K"},
                     {DType::Q6_K, "quantize_row_q6_K_ref", "dequantize_row_q6_K"}};
  // Random normal data with special blocks, uniform data, and stories260K's weights.
  std::vector<std::vector<float>> inputs;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(kQK_K * 64);
  for (float& v : x) v = normal(rng);
  std::fill(x.begin(), x.begin() + kQK_K, 0.0f);
  std::fill(x.begin() + kQK_K + 64, x.begin() + kQK_K + 96, 0.0f);
  for (int64_t i = 2 * kQK_K; i < 3 * kQK_K; ++i) x[i] = std::fabs(x[i]) + 3.0f;
  for (int64_t i = 3 * kQK_K; i < 4 * kQK_K; ++i) x[i] *= 1e-5f;
  for (int64_t i = 4 * kQK_K; i < 5 * kQK_K; ++i) x[i] *= 1e4f;
  for (int64_t i = 5 * kQK_K; i < 6 * kQK_K; ++i) x[i] = float(i % 7) - 3.0f;  // exact levels, ties
  for (int64_t i = 6 * kQK_K; i < 7 * kQK_K; ++i) x[i] *= std::pow(10.0f, float(i / 32 % 8) - 4);
  inputs.push_back(x);
  const auto file = GgufFile::open(test::testdata("models/stories260K.gguf"));
  for (const GgufTensorInfo& info : file->tensors()) {
    const int64_t n = info.ne[0] * info.ne[1] * info.ne[2] * info.ne[3] / kQK_K * kQK_K;
    if (info.type != DType::F32 || n == 0) continue;
    const float* d = reinterpret_cast<const float*>(file->tensor_data(info));
    inputs.emplace_back(d, d + n);
  }
  for (const Fns& f : fns) {
    const auto quant = reinterpret_cast<QuantFn>(dlsym(h, f.quant));
    const auto dequant = reinterpret_cast<DequantFn>(dlsym(h, f.dequant));
    ASSERT_NE(quant, nullptr) << f.quant;
    ASSERT_NE(dequant, nullptr) << f.dequant;
    for (size_t k = 0; k < inputs.size(); ++k) {
      const std::vector<float>& in = inputs[k];
      const int64_t n = static_cast<int64_t>(in.size());
      std::vector<uint8_t> ours(row_bytes(f.type, n)), theirs(ours.size());
      quantize_row(f.type, in.data(), ours.data(), n);
      quant(in.data(), theirs.data(), n);
      size_t first = 0;
      while (first < ours.size() && ours[first] == theirs[first]) ++first;
      EXPECT_EQ(first, ours.size()) << dtype_name(f.type) << " input " << k << ": first different byte "
                                    << first << " (block " << first / dtype_traits(f.type).block_bytes << ")";
      std::vector<float> a(in.size()), b(in.size());
      dequantize_row(f.type, theirs.data(), a.data(), n);
      dequant(theirs.data(), b.data(), n);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << dtype_name(f.type) << " " << k;
    }
  }
  dlclose(h);
}

}  // namespace
}  // namespace moe::kernels
