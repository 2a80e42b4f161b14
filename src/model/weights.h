// Looking up an architecture's tensors in a GGUF file with shape and type checks, so a malformed
// model fails at load with an error naming the tensor, never later inside a kernel.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "formats/gguf.h"

namespace moe {

class WeightLoader {
 public:
  explicit WeightLoader(const GgufFile& file) : file_(file) {}

  // The tensor `name` with exactly the shape ne (innermost first) and a type matmul accepts.
  Tensor matrix(const std::string& name, std::initializer_list<int64_t> ne) const;
  std::optional<Tensor> optional_matrix(const std::string& name, std::initializer_list<int64_t> ne) const;
  // A vector of n values (norm weights, biases) converted to f32 and owned by the caller.
  std::vector<float> vector(const std::string& name, int64_t n) const;
  std::optional<std::vector<float>> optional_vector(const std::string& name, int64_t n) const;

  // Metadata helpers that name the key on error. `required_*` throws when the key is absent.
  int64_t required_int(const std::string& key) const;
  int64_t int_or(const std::string& key, int64_t dflt) const { return file_.get_int(key, dflt); }
  float float_or(const std::string& key, float dflt) const {
    return static_cast<float>(file_.get_float(key, dflt));
  }

  const GgufFile& file() const { return file_; }

 private:
  const GgufTensorInfo& find(const std::string& name) const;
  void check_shape(const GgufTensorInfo& info, std::initializer_list<int64_t> ne) const;

  const GgufFile& file_;
};

}  // namespace moe
