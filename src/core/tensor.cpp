#include "core/tensor.h"

namespace moe {

void set_contiguous_strides(Tensor& t) {
  t.nb[0] = dtype_traits(t.type).block_bytes;
  t.nb[1] = row_bytes(t.type, t.ne[0]);
  for (int i = 2; i < 4; ++i) t.nb[i] = t.nb[i - 1] * static_cast<size_t>(t.ne[i - 1]);
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) {
    if (i) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

}  // namespace moe
