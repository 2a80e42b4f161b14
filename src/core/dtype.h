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

// K-quants: super-blocks of kQK_K values with per-sub-block scales (ggml-common.h).
constexpr int64_t kQK_K = 256;

// 8 sub-blocks of 32: x = d * sc[j] * q - dmin * m[j], q in 0..15. scales packs eight 6-bit
// (sc, m) pairs: for j < 4 sc = scales[j] & 63, m = scales[j+4] & 63; for j >= 4 the low 4 bits
// are in scales[j+4] (sc low nibble, m high nibble) and the top 2 bits in bits 6-7 of
// scales[j-4] (sc) and scales[j] (m). qs holds 64-value groups: the low nibbles of 32 bytes are
// values 0..31 of the group, the high nibbles values 32..63.
struct BlockQ4_K {
  uint16_t d;          // fp16 super-block scale of the sub-block scales
  uint16_t dmin;       // fp16 super-block scale of the sub-block mins
  uint8_t scales[12];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144);

// As Q4_K with 5-bit q: bit 4 of value l + 32*k of a 64-value group g (k = 0, 1) is bit 2g + k
// of qh[l].
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176);

// 16 sub-blocks of 16: x = d * scales[j] * (q - 32), q in 0..63. For each half of 128 values,
// value l + 32*k (l < 32, k < 4) has its low 4 bits in ql[l + 32*(k&1)] (low nibble for k < 2,
// high nibble otherwise) and its top 2 bits at bits 2k..2k+1 of qh[l].
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

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
