// A non-owning view of a tensor: type, shape and byte strides, ggml's convention (ne[0] is the
// innermost, contiguous dimension). A weight matrix of n_out rows of n_in inputs has
// ne = {n_in, n_out}. The memory behind data must stay live while the view is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace moe {

struct Tensor {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // elements per dimension
  size_t nb[4] = {0, 0, 0, 0};   // bytes between consecutive entries of each dimension
  const void* data = nullptr;
  // Q8_0 / Q4_0 only: rows are in the engine's grouped layout (kernels/ref/quant_dot.h,
  // repack_rows), not GGUF's. Only matmul reads such tensors.
  bool grouped = false;

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  size_t n_bytes() const { return row_bytes(type, ne[0]) * static_cast<size_t>(ne[1] * ne[2] * ne[3]); }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  const uint8_t* row(int64_t i1, int64_t i2 = 0, int64_t i3 = 0) const {
    return static_cast<const uint8_t*>(data) + i1 * nb[1] + i2 * nb[2] + i3 * nb[3];
  }
  std::string shape_str() const;
};

// Fills nb for a contiguous tensor of the given type and shape.
void set_contiguous_strides(Tensor& t);

}  // namespace moe
