// GGUF v3 (and v2) reader and writer: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
//
// The reader validates every count, length, offset, type and size against the file before use:
// a malformed or truncated file throws moe::Error naming what is wrong (key, tensor, offset) and
// never reads out of bounds or allocates more than the file could describe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace moe {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value: a scalar, a string, or an array (of scalars, strings or arrays).
class GgufValue {
 public:
  GgufValue() = default;
  static GgufValue u8(uint8_t v) { return scalar(GgufType::UINT8, v); }
  static GgufValue i8(int8_t v) { return scalar(GgufType::INT8, v); }
  static GgufValue u16(uint16_t v) { return scalar(GgufType::UINT16, v); }
  static GgufValue i16(int16_t v) { return scalar(GgufType::INT16, v); }
  static GgufValue u32(uint32_t v) { return scalar(GgufType::UINT32, v); }
  static GgufValue i32(int32_t v) { return scalar(GgufType::INT32, v); }
  static GgufValue u64(uint64_t v) { return scalar(GgufType::UINT64, v); }
  static GgufValue i64(int64_t v) { return scalar(GgufType::INT64, v); }
  static GgufValue f32(float v) { return scalar(GgufType::FLOAT32, v); }
  static GgufValue f64(double v) { return scalar(GgufType::FLOAT64, v); }
  static GgufValue boolean(bool v) { return scalar(GgufType::BOOL, v ? 1 : 0); }
  static GgufValue str(std::string v);
  // An array whose elements all have type elem_type (for ARRAY elements, any nested arrays).
  static GgufValue array(GgufType elem_type, std::vector<GgufValue> elems);
  static GgufValue str_array(const std::vector<std::string>& v);
  static GgufValue f32_array(const std::vector<float>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);

  GgufType type() const { return type_; }
  bool is_integer() const;  // any of the integer types (not BOOL)
  bool is_number() const;   // integer or float

  // Conversions throw moe::Error when the value has a different kind or does not fit.
  int64_t as_int() const;     // any integer type; UINT64 above INT64_MAX throws
  uint64_t as_uint() const;   // any non-negative integer
  double as_float() const;    // float or integer types
  bool as_bool() const;
  const std::string& as_string() const;

  GgufType elem_type() const { return elem_type_; }  // for arrays
  const std::vector<GgufValue>& elems() const;       // throws unless an array
  std::vector<std::string> as_string_array() const;
  std::vector<float> as_float_array() const;
  std::vector<int64_t> as_int_array() const;

  std::string to_display(size_t max_elems = 8) const;  // short human-readable form for `moe info`

 private:
  template <class T>
  static GgufValue scalar(GgufType t, T v);
  GgufType type_ = GgufType::UINT8;
  GgufType elem_type_ = GgufType::UINT8;
  uint64_t bits_ = 0;  // scalar payload: integers sign-extended, floats as double bits
  std::string str_;
  std::vector<GgufValue> elems_;
};

struct GgufTensorInfo {
  std::string name;
  DType type = DType::F32;
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  uint64_t offset = 0;  // relative to the start of the data section
  size_t n_bytes = 0;
  // Set only for tensors of a GgufFile built from parts: the bytes live outside any file.
  const uint8_t* external = nullptr;
};

// A parsed GGUF file. Built from a path (mmapped, owned) or from a caller's buffer, which must
// then stay live while the GgufFile and any tensor view from it are used.
class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::string& path);
  GgufFile(const uint8_t* data, size_t size, std::string name);

  // A model that is not a GGUF file but reads like one (a Hugging Face directory mapped onto
  // GGUF names and keys): metadata and tensors whose `external` points at their bytes. keep_alive
  // owns whatever those bytes live in (mappings, converted buffers); it is destroyed with the
  // GgufFile. Throws moe::Error on duplicate names or a tensor without bytes.
  static std::unique_ptr<GgufFile> from_parts(std::string name,
                                              std::vector<std::pair<std::string, GgufValue>> kv,
                                              std::vector<GgufTensorInfo> tensors,
                                              std::vector<std::shared_ptr<const void>> keep_alive);

  uint32_t version() const { return version_; }
  const std::string& name() const { return name_; }
  uint32_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;  // nullptr when absent
  const GgufValue& get(const std::string& key) const;   // throws naming the key when absent
  // Typed getters with a default for absent keys; a present key of the wrong type throws.
  std::string get_string(const std::string& key, const std::string& dflt) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;
  double get_float(const std::string& key, double dflt) const;
  bool get_bool(const std::string& key, bool dflt) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  // A contiguous view of a tensor's bytes inside the file.
  Tensor tensor(const GgufTensorInfo& info) const;
  const uint8_t* tensor_data(const GgufTensorInfo& info) const;

 private:
  void parse();

  GgufFile() = default;

  std::unique_ptr<MappedFile> file_;
  std::vector<std::shared_ptr<const void>> keep_alive_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF v3 file. Tensors are written in the order added, each aligned to alignment.
class GgufWriter {
 public:
  // Sets (or replaces, keeping its position) a metadata value.
  void set(const std::string& key, GgufValue value);
  // ne lists dimensions innermost first. bytes is copied at add time.
  void add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                  const void* data, size_t n_bytes);
  void set_alignment(uint32_t a);  // also writes general.alignment
  // Serialises into memory.
  std::vector<uint8_t> to_bytes() const;
  // Writes to path atomically: a temporary file beside it, fsync, then rename.
  void write(const std::string& path) const;

 private:
  struct PendingTensor {
    GgufTensorInfo info;
    std::vector<uint8_t> bytes;
  };
  uint32_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace moe
