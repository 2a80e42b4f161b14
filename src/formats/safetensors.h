// Hugging Face safetensors: https://github.com/huggingface/safetensors (format section).
//
//   [u64 little-endian N][N bytes of JSON header][data section]
//   header: {"NAME": {"dtype": "BF16", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
//            "__metadata__": {"key": "value", ...}}   (offsets relative to the data section)
//
// The reader validates the header against the file before any tensor is touched: a malformed,
// truncated or hostile file throws moe::Error naming the file and the tensor, and never reads
// out of bounds. Shapes are in PyTorch order (outermost first), unlike GGUF's ne.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace moe {

// The element types safetensors names. Listing any of them is fine; only F32, F16, BF16 (and
// F8_E4M3 through dequantization) can become weights.
enum class StDtype : uint8_t {
  kBool,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kF64,
  kI64,
  kU64,
};
const char* st_dtype_name(StDtype t);  // "BF16", "F8_E4M3", ...
size_t st_dtype_size(StDtype t);       // bytes per element
// Parses a header dtype; std::nullopt for names this reader does not know.
std::optional<StDtype> st_dtype_from_name(const std::string& name);
// The engine type with the same bytes (F32, F16, BF16); std::nullopt for the rest.
std::optional<DType> st_dtype_to_dtype(StDtype t);

struct SafetensorsTensor {
  std::string name;
  std::string file;  // path of the file holding it, for messages
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;     // outermost first; empty for a scalar
  const uint8_t* data = nullptr;  // into the file's mapping (may be null when n_bytes == 0)
  size_t n_bytes = 0;
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  // Maps path and validates the header (see the file comment). Throws moe::Error naming path
  // and, where one is at fault, the tensor.
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  // The same for bytes the caller keeps live; name is used in messages.
  static std::shared_ptr<const SafetensorsFile> from_bytes(const uint8_t* data, size_t size,
                                                           std::string name);

  const std::string& path() const { return path_; }
  // Tensors in data order (by offset, then name).
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  void parse(const uint8_t* data, size_t size);

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All the safetensors of a model directory, as one name -> tensor table:
//  - model.safetensors.index.json present: its weight_map (tensor -> shard file) decides. Shard
//    names must stay inside the directory (relative, no ".." component); every tensor it names
//    must be in its shard and every shard tensor must be in the map.
//  - else model.safetensors;
//  - else every *.safetensors file in the directory (a name in two files is an error).
class SafetensorsDir {
 public:
  const std::string& dir() const { return dir_; }
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const { return files_; }
  // Every tensor, shard by shard in data order.
  const std::vector<const SafetensorsTensor*>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(const std::string& name) const;

 private:
  friend std::unique_ptr<SafetensorsDir> open_safetensors_dir(const std::string& dir);
  std::string dir_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::vector<const SafetensorsTensor*> tensors_;
  std::map<std::string, const SafetensorsTensor*> index_;
};

// Throws moe::Error naming dir (and the shard or tensor at fault) when the directory holds no
// safetensors, the index is malformed or disagrees with the shards.
std::unique_ptr<SafetensorsDir> open_safetensors_dir(const std::string& dir);

// Builds a safetensors file (for tests and tools). Tensors are laid out in the order added.
class SafetensorsWriter {
 public:
  // bytes must hold exactly product(shape) * st_dtype_size(dtype) bytes; they are copied.
  void add(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape, const void* data,
           size_t n_bytes);
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& values);
  void set_metadata(const std::string& key, const std::string& value);
  std::vector<uint8_t> to_bytes() const;
  // Writes path atomically (temporary file, fsync, rename).
  void write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    StDtype dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Pending> tensors_;
  std::map<std::string, std::string> metadata_;
};

// ---- FP8 ----

// OCP FP8 E4M3 ("e4m3fn", torch.float8_e4m3fn): sign, 4 exponent bits (bias 7), 3 mantissa bits;
// no infinities, 0x7f / 0xff are NaN, exponent 0 holds subnormals (m/8 * 2^-6). Exact in f32.
float fp8_e4m3_to_fp32(uint8_t v);
// The nearest e4m3 value (ties to even), saturating to +-448; for tests and tools.
uint8_t fp32_to_fp8_e4m3(float f);

// DeepSeek's block-scaled FP8: w[r][c] = fp8(q[r][c]) * scale_inv[r / block_rows][c / block_cols],
// with q row-major [rows, cols] and scale_inv row-major [ceil(rows / block_rows),
// ceil(cols / block_cols)] (the last block row/column may be partial). out is [rows, cols].
void dequantize_fp8_blocks(const uint8_t* q, int64_t rows, int64_t cols, const float* scale_inv,
                           int64_t block_rows, int64_t block_cols, float* out);
// The same, rounded to bf16 (round to nearest even) as the converter's BF16 output does.
void dequantize_fp8_blocks_bf16(const uint8_t* q, int64_t rows, int64_t cols, const float* scale_inv,
                                int64_t block_rows, int64_t block_cols, uint16_t* out);

}  // namespace moe
