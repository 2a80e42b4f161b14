// Element types with GGUF's numbering and exact block layouts (ggml-common.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

// Values are ggml_type ids as stored in GGUF tensor infos.
enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeTraits {
  const char* name;       // ggml's name: "f32", "q8_0", ...
  int64_t block_size;     // elements per block (1 for plain types)
  size_t block_bytes;     // bytes per block
};

// Returns nullptr for ids this engine does not know (the caller reports the id).
const DTypeTraits* dtype_traits(uint32_t id);
const DTypeTraits& dtype_traits(DType t);
inline const char* dtype_name(DType t) { return dtype_traits(t).name; }
// Parses "f32", "Q8_0", ... (case-insensitive); throws moe::Error naming the text when unknown.
DType dtype_from_name(const std::string& name);

// Bytes of a row of n elements; throws if n is not a multiple of the block size.
size_t row_bytes(DType t, int64_t n);

constexpr int64_t kQK8_0 = 32;
constexpr int64_t kQK4_0 = 32;

// GGUF's block layouts, byte for byte.
struct BlockQ8_0 {
  uint16_t d;          // fp16 scale
  int8_t qs[kQK8_0];   // x = d * q
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;                 // fp16 scale
  uint8_t qs[kQK4_0 / 2];     // x[j] = d*((qs[j]&15)-8), x[j+16] = d*((qs[j]>>4)-8)
};
static_assert(sizeof(BlockQ4_0) == 18);

// IEEE half and bfloat16 conversions, bit-exact with ggml's reference conversions.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
inline float bf16_to_fp32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t fp32_to_bf16(float f);  // round to nearest even; NaN stays NaN

}  // namespace moe
