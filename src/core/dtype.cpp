#include "core/dtype.h"

#include <cctype>
#include <cstring>

#include "core/error.h"

namespace moe {
namespace {

struct Entry {
  uint32_t id;
  DTypeTraits traits;
};

constexpr Entry kTypes[] = {
    {0, {"f32", 1, 4}},      {1, {"f16", 1, 2}},      {2, {"q4_0", 32, 18}},
    {3, {"q4_1", 32, 20}},   {6, {"q5_0", 32, 22}},   {7, {"q5_1", 32, 24}},
    {8, {"q8_0", 32, 34}},   {9, {"q8_1", 32, 36}},   {10, {"q2_k", 256, 84}},
    {11, {"q3_k", 256, 110}}, {12, {"q4_k", 256, 144}}, {13, {"q5_k", 256, 176}},
    {14, {"q6_k", 256, 210}}, {15, {"q8_k", 256, 292}}, {24, {"i8", 1, 1}},
    {25, {"i16", 1, 2}},     {26, {"i32", 1, 4}},     {27, {"i64", 1, 8}},
    {28, {"f64", 1, 8}},     {30, {"bf16", 1, 2}},
};

}  // namespace

const DTypeTraits* dtype_traits(uint32_t id) {
  for (const Entry& e : kTypes)
    if (e.id == id) return &e.traits;
  return nullptr;
}

const DTypeTraits& dtype_traits(DType t) {
  const DTypeTraits* tr = dtype_traits(static_cast<uint32_t>(t));
  MOE_CHECK(tr != nullptr, "unknown tensor type id ", static_cast<uint32_t>(t));
  return *tr;
}

DType dtype_from_name(const std::string& name) {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : kTypes)
    if (lower == e.traits.name) return static_cast<DType>(e.id);
  fail("unknown type '", name, "'");
}

size_t row_bytes(DType t, int64_t n) {
  const DTypeTraits& tr = dtype_traits(t);
  MOE_CHECK(n >= 0 && n % tr.block_size == 0, "row of ", n, " elements is not a multiple of ",
            tr.block_size, " for type ", tr.name);
  return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even conversion, the same result as F16C's _cvtss_sh(x, 0) and ggml's
// GGML_FP32_TO_FP16 on x86.
uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t absx = x & 0x7fffffff;
  if (absx >= 0x7f800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 | ((absx >> 13) & 0x3ff) : 0));
  }
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00);  // overflow to inf
  if (absx < 0x38800000u) {                                              // subnormal or zero
    if (absx < 0x33000000u) return static_cast<uint16_t>(sign);           // < 2^-25 rounds to 0
    const uint32_t e = absx >> 23;
    const uint32_t m = (absx & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14..24 so that value = m >> shift in half-subnormal units
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = ((absx >> 13) - (112u << 10));
  const uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;  // may carry into exponent: still correct
  return static_cast<uint16_t>(sign | r);
}

uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

}  // namespace moe
