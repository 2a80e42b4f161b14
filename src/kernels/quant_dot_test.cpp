// The integer kernels (quantized weights x quantized activations) on every ISA this CPU offers,
// in both Q8_0/Q4_0 row layouts, against the scalar definition in ref/quant_dot.cpp: equal bit
// for bit. And that definition against the math it stands for: the weights' exact values times
// the activations' exact quantized values, summed in double.
#include "kernels/ref/quant_dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/isa_restorer_test.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref_kernels.h"

namespace moe::kernels {
namespace {

struct QWeights {
  std::vector<uint8_t> bytes, grouped;
  std::vector<float> values;  // [n_out, n_in] dequantized
  Tensor tensor;              // GGUF layout
  Tensor grouped_tensor;      // engine's grouped layout (Q8_0 / Q4_0)
};

// Random rows; every third block (staggered by row) all zeros, some rows with a huge range.
QWeights make(DType t, int64_t n_in, int64_t n_out, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  QWeights w;
  const size_t rb = row_bytes(t, n_in);
  const int64_t block = dtype_traits(t).block_size;
  w.bytes.resize(rb * n_out);
  w.values.resize(static_cast<size_t>(n_in * n_out));
  std::vector<float> src(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t i = 0; i < n_in; ++i) src[i] = u(rng) * (r % 4 == 3 && i % 7 == 0 ? 40.0f : 1.0f);
    for (int64_t b = 0; b < n_in / block; ++b)
      if ((b + r) % 3 == 0) std::fill(src.begin() + b * block, src.begin() + (b + 1) * block, 0.0f);
    quantize_row(t, src.data(), w.bytes.data() + r * rb, n_in);
    dequantize_row(t, w.bytes.data() + r * rb, w.values.data() + r * n_in, n_in);
  }
  w.tensor.name = "w";
  w.tensor.type = t;
  w.tensor.n_dims = 2;
  w.tensor.ne[0] = n_in;
  w.tensor.ne[1] = n_out;
  set_contiguous_strides(w.tensor);
  w.tensor.data = w.bytes.data();
  w.grouped_tensor = w.tensor;
  if (t == DType::Q8_0 || t == DType::Q4_0) {
    w.grouped.resize(w.bytes.size());
    ref::group_rows(t, w.bytes.data(), rb, n_out, n_in, w.grouped.data());
    w.grouped_tensor.data = w.grouped.data();
    w.grouped_tensor.grouped = true;
  }
  return w;
}

// The reference result and, independently, the exact math in double.
std::vector<float> reference(const QWeights& w, const std::vector<float>& x, int64_t n_tokens,
                             std::vector<double>* exact, std::vector<double>* magnitude) {
  const DType t = w.tensor.type, act = ref::act_type_for(t);
  const int64_t n_in = w.tensor.ne[0], n_out = w.tensor.ne[1];
  const int64_t block = act == DType::Q8_K ? 256 : 32;
  std::vector<int8_t> qs(static_cast<size_t>(n_tokens * n_in));
  std::vector<float> d(static_cast<size_t>(n_tokens * ref::act_d_per_row(act, n_in)));
  std::vector<int32_t> aux(static_cast<size_t>(n_tokens * ref::act_aux_per_row(act, n_in)));
  ref::quantize_acts(act, x.data(), n_tokens, n_in, qs.data(), d.data(), aux.data());
  std::vector<float> y(static_cast<size_t>(n_tokens * n_out));
  const ref::QMatmulArgs a{
      w.bytes.data(), row_bytes(t, n_in),
      false,          ref::QuantizedActsView{qs.data(), d.data(), aux.data(), n_in, n_tokens},
      y.data(),       n_out};
  ref::qmatmul_rows(t, a, 0, n_out);
  exact->assign(y.size(), 0.0);
  magnitude->assign(y.size(), 0.0);
  for (int64_t k = 0; k < n_tokens; ++k)
    for (int64_t r = 0; r < n_out; ++r)
      for (int64_t i = 0; i < n_in; ++i) {
        const double xv = double(d[k * (n_in / block) + i / block]) * qs[k * n_in + i];
        (*exact)[k * n_out + r] += double(w.values[r * n_in + i]) * xv;
        (*magnitude)[k * n_out + r] += std::fabs(double(w.values[r * n_in + i]) * xv);
      }
  return y;
}

void check_type(DType t, const std::vector<int64_t>& n_ins) {
  IsaRestorer restore;
  ThreadPool two(2);
  for (int64_t n_in : n_ins) {
    for (int64_t n_out : {1, 3, 21}) {
      const QWeights w = make(t, n_in, n_out, static_cast<uint32_t>(n_in * 31 + n_out));
      for (int64_t n_tokens : {1, 2, 3, 5, 8}) {
        std::mt19937 rng(static_cast<uint32_t>(7 * n_tokens + n_in));
        std::uniform_real_distribution<float> u(-2.0f, 2.0f);
        std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
        for (float& v : x) v = u(rng);
        if (n_tokens > 2) std::fill(x.begin(), x.begin() + n_in, 0.0f);  // an all-zero token
        std::vector<double> exact, mag;
        const std::vector<float> want = reference(w, x, n_tokens, &exact, &mag);
        const std::string what = std::string(dtype_name(t)) + " n_in " + std::to_string(n_in) + " n_out " +
                                 std::to_string(n_out) + " n_tokens " + std::to_string(n_tokens);
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_LE(std::fabs(want[i] - exact[i]), 1e-5 * mag[i] + 1e-6) << what << " output " << i;
        for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
          if (static_cast<int>(isa) > static_cast<int>(detected_isa())) continue;
          force_isa(isa);
          for (const Tensor* tensor : {&w.tensor, &w.grouped_tensor}) {
            for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &two}) {
              std::vector<float> y(want.size(), NAN);
              matmul(*tensor, x.data(), n_tokens, y.data(), pool);
              ASSERT_EQ(0, std::memcmp(y.data(), want.data(), y.size() * sizeof(float)))
                  << isa_name(isa) << (tensor->grouped ? " grouped " : " gguf ") << what;
            }
          }
        }
      }
    }
  }
}

TEST(QuantDot, Q8_0EveryIsaAndLayoutEqualsReference) {
  check_type(DType::Q8_0, {32, 64, 96, 128, 160, 224, 256, 288, 704, 1056});
}
TEST(QuantDot, Q4_0EveryIsaAndLayoutEqualsReference) {
  check_type(DType::Q4_0, {32, 64, 96, 128, 160, 224, 256, 288, 704, 1056});
}
TEST(QuantDot, Q4_KEveryIsaEqualsReference) { check_type(DType::Q4_K, {256, 512, 2304}); }
TEST(QuantDot, Q5_KEveryIsaEqualsReference) { check_type(DType::Q5_K, {256, 512, 2304}); }
TEST(QuantDot, Q6_KEveryIsaEqualsReference) { check_type(DType::Q6_K, {256, 512, 2304}); }

// The AVX-512 VNNI kernels' logic (qdot_avx512.cpp: vpdpbusd steps over grouped rows), run with
// vpdpbusd emulated in AVX2, so that it is tested on CPUs without VNNI too. Weights include Q8_0
// quants of -128 (not made by the quantizer, but valid in a file), the widest product.
TEST(QuantDot, VnniKernelLogicEqualsReference) {
  if (static_cast<int>(detected_isa()) < static_cast<int>(Isa::kAvx2)) GTEST_SKIP() << "needs AVX2";
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    for (int64_t n_in : {32, 96, 128, 160, 224, 256, 288, 704, 1056}) {
      for (int64_t n_out : {1, 3, 21}) {
        QWeights w = make(t, n_in, n_out, static_cast<uint32_t>(n_in + 7 * n_out));
        const size_t rb = row_bytes(t, n_in);
        if (t == DType::Q8_0)
          for (int64_t r = 0; r < n_out; r += 2) w.bytes[r * rb + 2 + static_cast<size_t>(r % 32)] = 0x80;
        ref::group_rows(t, w.bytes.data(), rb, n_out, n_in, w.grouped.data());
        for (int64_t n_tokens : {1, 2, 3, 5, 8}) {
          std::mt19937 rng(static_cast<uint32_t>(3 * n_tokens + n_in));
          std::uniform_real_distribution<float> u(-2.0f, 2.0f);
          std::vector<float> x(static_cast<size_t>(n_tokens * n_in));
          for (float& v : x) v = u(rng);
          std::vector<int8_t> qs(x.size()), qg(static_cast<size_t>(n_tokens * ref::grouped_act_row(n_in)));
          std::vector<float> d(static_cast<size_t>(n_tokens * n_in / 32));
          std::vector<int32_t> aux(d.size());
          ref::quantize_acts(DType::Q8_0, x.data(), n_tokens, n_in, qs.data(), d.data(), aux.data());
          ref::interleave_acts(qs.data(), n_tokens, n_in, qg.data());
          std::vector<float> want(static_cast<size_t>(n_tokens * n_out)), got(want.size(), NAN);
          const ref::QuantizedActsView xv{qs.data(), d.data(), aux.data(), n_in, n_tokens, qg.data()};
          ref::qmatmul_rows(t, ref::QMatmulArgs{w.bytes.data(), rb, false, xv, want.data(), n_out}, 0, n_out);
          const cpu::QIsaKernels& k = cpu::kEmulatedVnniQKernels;
          (t == DType::Q8_0 ? k.q8_0 : k.q4_0)(
              ref::QMatmulArgs{w.grouped.data(), rb, true, xv, got.data(), n_out}, 0, n_out);
          ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
              << dtype_name(t) << " n_in " << n_in << " n_out " << n_out << " n_tokens " << n_tokens;
        }
      }
    }
  }
}

// Activation quantization is ggml's: Q8_0 blocks byte-identical to quantize_row(Q8_0), and Q8_K
// values within half a step of x.
TEST(QuantDot, ActivationQuantization) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> x(512);
  for (float& v : x) v = u(rng);
  std::fill(x.begin() + 256, x.begin() + 288, 0.0f);
  std::vector<int8_t> qs(512);
  std::vector<float> d(16);
  std::vector<int32_t> aux(32);
  ref::quantize_acts(DType::Q8_0, x.data(), 1, 512, qs.data(), d.data(), aux.data());
  std::vector<BlockQ8_0> blocks(16);
  quantize_row(DType::Q8_0, x.data(), blocks.data(), 512);
  for (int b = 0; b < 16; ++b) {
    EXPECT_EQ(d[b], fp16_to_fp32(blocks[b].d));
    EXPECT_EQ(0, std::memcmp(qs.data() + 32 * b, blocks[b].qs, 32));
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) s += blocks[b].qs[i];
    EXPECT_EQ(aux[b], 8 * s);
  }
  ref::quantize_acts(DType::Q8_K, x.data(), 1, 512, qs.data(), d.data(), aux.data());
  for (int i = 0; i < 512; ++i) {
    EXPECT_LE(std::fabs(d[i / 256] * qs[i] - x[i]), std::fabs(d[i / 256]) * 0.5001f + 1e-7f) << i;
    EXPECT_LE(std::abs(int(qs[i])), 127);
  }
  for (int j = 0; j < 32; ++j) {
    int32_t s = 0;
    for (int i = 16 * j; i < 16 * j + 16; ++i) s += qs[i];
    EXPECT_EQ(aux[j], s);
  }
}

// The grouped layout is a permutation of the same bytes.
TEST(QuantDot, GroupedLayoutKeepsTheBytes) {
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    const QWeights w = make(t, 704, 5, 1);
    ASSERT_EQ(w.bytes.size(), w.grouped.size());
    size_t ones_a = 0, ones_b = 0;
    for (uint8_t v : w.bytes) ones_a += static_cast<size_t>(__builtin_popcount(v));
    for (uint8_t v : w.grouped) ones_b += static_cast<size_t>(__builtin_popcount(v));
    EXPECT_EQ(ones_a, ones_b) << dtype_name(t);
  }
}

}  // namespace
}  // namespace moe::kernels
