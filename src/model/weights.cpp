#include "model/weights.h"

#include "core/error.h"
#include "kernels/kernels.h"

namespace moe {

namespace {

std::string shape_string(const int64_t* ne, size_t n) {
  std::string s = "[";
  for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

}  // namespace

const GgufTensorInfo& WeightLoader::find(const std::string& name) const {
  const GgufTensorInfo* info = file_.find_tensor(name);
  MOE_CHECK(info != nullptr, file_.name(), ": tensor '", name, "' is missing");
  return *info;
}

void WeightLoader::check_shape(const GgufTensorInfo& info, std::initializer_list<int64_t> ne) const {
  bool ok = true;
  size_t i = 0;
  for (int64_t want : ne) ok = ok && info.ne[i++] == want;
  for (; i < 4; ++i) ok = ok && info.ne[i] == 1;
  if (!ok) {
    const std::vector<int64_t> want(ne);
    fail(file_.name(), ": tensor '", info.name, "' has shape ", shape_string(info.ne, info.n_dims),
         ", expected ", shape_string(want.data(), want.size()));
  }
}

Tensor WeightLoader::matrix(const std::string& name, std::initializer_list<int64_t> ne) const {
  const GgufTensorInfo& info = find(name);
  check_shape(info, ne);
  MOE_CHECK(kernels::matmul_supports(info.type), file_.name(), ": tensor '", name, "' has type ",
            dtype_name(info.type), ", which this engine cannot multiply yet");
  return file_.tensor(info);
}

std::optional<Tensor> WeightLoader::optional_matrix(const std::string& name,
                                                    std::initializer_list<int64_t> ne) const {
  if (file_.find_tensor(name) == nullptr) return std::nullopt;
  return matrix(name, ne);
}

std::vector<float> WeightLoader::vector(const std::string& name, int64_t n) const {
  const GgufTensorInfo& info = find(name);
  check_shape(info, {n});
  MOE_CHECK(info.type == DType::F32 || info.type == DType::F16 || info.type == DType::BF16,
            file_.name(), ": tensor '", name, "' has type ", dtype_name(info.type),
            ", expected f32, f16 or bf16");
  std::vector<float> out(static_cast<size_t>(n));
  kernels::dequantize_row(info.type, file_.tensor_data(info), out.data(), n);
  return out;
}

std::optional<std::vector<float>> WeightLoader::optional_vector(const std::string& name, int64_t n) const {
  if (file_.find_tensor(name) == nullptr) return std::nullopt;
  return vector(name, n);
}

int64_t WeightLoader::required_int(const std::string& key) const {
  const GgufValue* v = file_.find(key);
  MOE_CHECK(v != nullptr, file_.name(), ": metadata key '", key, "' is missing");
  MOE_CHECK(v->is_integer(), file_.name(), ": metadata key '", key, "' has type ",
            gguf_type_name(v->type()), ", expected an integer");
  return v->as_int();
}

}  // namespace moe
