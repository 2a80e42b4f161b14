// Run-time dispatch: picks the ISA once (CPU features, then MOE_ISA), validates arguments, splits
// matmul rows over the thread pool and calls the per-ISA kernels. Built for baseline x86-64.
#include "kernels/kernels.h"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "core/error.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/ref/quant_dot.h"
#include "kernels/ref/ref_kernels.h"

namespace moe::kernels {
namespace {

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  // The AVX-512 unit is compiled with all of these enabled, so the compiler may use any of them.
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
  if (avx512) return Isa::kAvx512;
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

Isa clamp_to_detected(Isa isa) {
  const Isa best = detected_isa();
  return static_cast<int>(isa) > static_cast<int>(best) ? best : isa;
}

// MOE_ISA, if set to a known name, caps the ISA; unknown values are reported once and ignored.
Isa initial_isa() {
  Isa isa = detected_isa();
  const char* env = std::getenv("MOE_ISA");
  if (env == nullptr || *env == '\0') return isa;
  std::string v;
  for (const char* c = env; *c; ++c) v += static_cast<char>(std::tolower(static_cast<unsigned char>(*c)));
  if (v == "scalar") return Isa::kScalar;
  if (v == "avx2") return clamp_to_detected(Isa::kAvx2);
  if (v == "avx512") return isa;
  std::fprintf(stderr, "moe: ignoring MOE_ISA=%s (expected scalar, avx2 or avx512)\n", env);
  return isa;
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

// The SIMD kernel table of the active ISA, or null for the scalar reference.
const cpu::IsaKernels* simd_kernels() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return &cpu::kAvx512Kernels;
    case Isa::kAvx2:
      return &cpu::kAvx2Kernels;
    case Isa::kScalar:
      break;
  }
  return nullptr;
}

// The float-input kernels (F32, F16, BF16); the quantized types go through qmatmul_fn.
cpu::MatmulRowsFn matmul_fn(const cpu::IsaKernels& k, DType t) {
  switch (t) {
    case DType::F32:
      return k.matmul_f32;
    case DType::F16:
      return k.matmul_f16;
    case DType::BF16:
      return k.matmul_bf16;
    default:
      return nullptr;
  }
}

cpu::QMatmulRowsFn qmatmul_fn(DType t) {
  if (active_isa() == Isa::kScalar) return nullptr;
  const cpu::QIsaKernels& k = cpu::kAvx2QKernels;
  const bool vnni = active_isa() == Isa::kAvx512;
  switch (t) {
    case DType::Q8_0:
      return vnni ? cpu::kAvx512QKernels.q8_0 : k.q8_0;
    case DType::Q4_0:
      return vnni ? cpu::kAvx512QKernels.q4_0 : k.q4_0;
    case DType::Q4_K:
      return k.q4_k;
    case DType::Q5_K:
      return k.q5_k;
    case DType::Q6_K:
      return k.q6_k;
    default:
      return nullptr;
  }
}

// Rows per thread chunk boundary: a multiple of every row tile, and 64 bytes of y.
constexpr int64_t kRowGrain = 16;
// Below this many multiply-adds the pool's hand-off costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 15;

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void force_isa(Isa isa) {
  active_slot().store(static_cast<int>(clamp_to_detected(isa)), std::memory_order_relaxed);
}

bool matmul_supports(DType t) { return ref::supports(t); }

const Activations::Quantized& Activations::quantized(DType act) const {
  const bool k = act == DType::Q8_K;
  Quantized& q = k ? q8_k_ : q8_0_;
  bool& have = k ? have_q8_k_ : have_q8_0_;
  if (!have) {
    q.qs.resize(static_cast<size_t>(n_tokens_ * n_in_));
    q.d.resize(static_cast<size_t>(n_tokens_ * ref::act_d_per_row(act, n_in_)));
    q.aux.resize(static_cast<size_t>(n_tokens_ * ref::act_aux_per_row(act, n_in_)));
    ref::quantize_acts(act, x_, n_tokens_, n_in_, q.qs.data(), q.d.data(), q.aux.data());
    if (!k) {
      q.qs_grouped.resize(static_cast<size_t>(n_tokens_ * ref::grouped_act_row(n_in_)));
      ref::interleave_acts(q.qs.data(), n_tokens_, n_in_, q.qs_grouped.data());
    }
    have = true;
  }
  return q;
}

void matmul(const Tensor& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  matmul(w, Activations(x, n_tokens, w.ne[0]), y, pool);
}

void Activations::prepare_for(DType w) const {
  const DType act = ref::act_type_for(w);
  if (act != DType::F32) quantized(act);
}

namespace {

// Validates a matmul and returns a function computing rows [r0, r1) of it.
std::function<void(int64_t, int64_t)> matmul_job(const Tensor& w, const Activations& xa, float* y) {
  const float* x = xa.data();
  const int64_t n_tokens = xa.n_tokens();
  MOE_CHECK(matmul_supports(w.type), "matmul: tensor '", w.name, "' has unsupported type ",
            dtype_name(w.type));
  const int64_t n_in = w.ne[0];
  const int64_t n_out = w.rows();
  MOE_CHECK(n_in >= 0 && n_in % dtype_traits(w.type).block_size == 0, "matmul: tensor '", w.name, "' row of ",
            n_in, " elements is not a multiple of the block size of ", dtype_name(w.type));
  MOE_CHECK(n_tokens >= 0, "matmul: negative token count ", n_tokens);
  // Rows must be evenly spaced (contiguous over dims 1..3) so that row r is at data + r * nb[1].
  const size_t min_stride = row_bytes(w.type, n_in);
  MOE_CHECK(w.nb[1] >= min_stride && w.nb[2] == w.nb[1] * static_cast<size_t>(w.ne[1]) &&
                w.nb[3] == w.nb[2] * static_cast<size_t>(w.ne[2]),
            "matmul: tensor '", w.name, "' ", w.shape_str(), " does not have evenly spaced rows");
  MOE_CHECK(!w.grouped || w.type == DType::Q8_0 || w.type == DType::Q4_0, "matmul: tensor '", w.name,
            "' is marked grouped but has type ", dtype_name(w.type));
  MOE_CHECK(xa.n_in() == n_in, "matmul: tensor '", w.name, "' takes ", n_in, " inputs, not ", xa.n_in());
  if (n_out == 0 || n_tokens == 0) return [](int64_t, int64_t) {};
  MOE_CHECK(w.data != nullptr && x != nullptr && y != nullptr, "matmul: tensor '", w.name, "' has no data");

  const DType act = ref::act_type_for(w.type);
  if (act != DType::F32) {
    const Activations::Quantized& q = xa.quantized(act);
    const ref::QMatmulArgs qa{static_cast<const uint8_t*>(w.data),
                              w.nb[1],
                              w.grouped,
                              ref::QuantizedActsView{q.qs.data(), q.d.data(), q.aux.data(), n_in, n_tokens,
                                                     q.qs_grouped.empty() ? nullptr : q.qs_grouped.data()},
                              y,
                              n_out};
    const cpu::QMatmulRowsFn qfn = qmatmul_fn(w.type);
    const DType type = w.type;
    return [qa, qfn, type](int64_t r0, int64_t r1) {
      if (qfn) {
        qfn(qa, r0, r1);
      } else {
        ref::qmatmul_rows(type, qa, r0, r1);
      }
    };
  }
  const cpu::IsaKernels* simd = simd_kernels();
  const cpu::MatmulArgs args{static_cast<const uint8_t*>(w.data), w.nb[1], n_in, x, n_tokens, y, n_out};
  const cpu::MatmulRowsFn fn = simd ? matmul_fn(*simd, w.type) : nullptr;
  const DType type = w.type;
  return [args, fn, type](int64_t r0, int64_t r1) {
    if (fn) {
      fn(args, r0, r1);
    } else {
      ref::matmul_rows(type, args.w, args.row_stride, args.n_in, args.x, args.n_tokens, args.y, args.n_out,
                       r0, r1);
    }
  };
}

}  // namespace

void matmul(const Tensor& w, const Activations& xa, float* y, ThreadPool* pool) {
  const std::function<void(int64_t, int64_t)> job = matmul_job(w, xa, y);
  const int64_t n_out = w.rows();
  if (pool != nullptr && pool->size() > 1 && n_out * w.ne[0] * xa.n_tokens() >= kMinParallelWork) {
    pool->run(
        n_out, [&](int, int64_t r0, int64_t r1) { job(r0, r1); }, kRowGrain);
  } else {
    job(0, n_out);
  }
}

void matmul_rows(const Tensor& w, const Activations& x, float* y, int64_t r0, int64_t r1) {
  MOE_CHECK(r0 >= 0 && r0 <= r1 && r1 <= w.rows(), "matmul_rows: rows [", r0, ", ", r1, ") of tensor '",
            w.name, "' with ", w.rows(), " rows");
  if (r0 < r1) matmul_job(w, x, y)(r0, r1);
}

void weighted_rows(const float* p, int64_t p_stride, int64_t n_out, const float* rows, int64_t row_stride,
                   int64_t n_rows, float* out, int64_t out_stride, int64_t n) {
  if (active_isa() != Isa::kScalar)
    return cpu::kAvx2WeightedRows(p, p_stride, n_out, rows, row_stride, n_rows, out, out_stride, n);
  ref::weighted_rows(p, p_stride, n_out, rows, row_stride, n_rows, out, out_stride, n);
}

void rms_norm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  if (const cpu::IsaKernels* k = simd_kernels()) return k->rms_norm(x, weight, n, eps, out);
  ref::rms_norm(x, weight, n, eps, out);
}

void softmax(float* x, int64_t n) {
  if (const cpu::IsaKernels* k = simd_kernels()) return k->softmax(x, n);
  ref::softmax(x, n);
}

void swiglu(const float* gate, const float* up, float* out, int64_t n) {
  if (const cpu::IsaKernels* k = simd_kernels()) return k->swiglu(gate, up, out, n);
  ref::swiglu(gate, up, out, n);
}

// Not a hot path (n_heads * head_dim values per token): the reference, which is ggml's math.
void rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const RopeParams& p) {
  ref::rope(x, n_heads, head_dim, pos, p);
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) { ref::dequantize_row(t, src, dst, n); }

void quantize_row(DType t, const float* src, void* dst, int64_t n) { ref::quantize_row(t, src, dst, n); }

}  // namespace moe::kernels
