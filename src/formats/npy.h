// NumPy .npy files (format 1.0) of little-endian float32, for logit dumps and parity checks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe {

// Writes data (row-major, product(shape) values) atomically to path.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// Reads a C-order '<f4' array; throws moe::Error naming the path on anything else.
NpyArray read_npy_f32(const std::string& path);

}  // namespace moe
