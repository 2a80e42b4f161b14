#include "formats/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/file_util.h"

namespace moe {
namespace {

using json = nlohmann::json;

// The safetensors library's own limit on the header.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// JSON nesting the header may use; a valid header needs 3 levels.
constexpr int kMaxJsonDepth = 32;
// Bytes a tensor may take (keeps every size product far from overflow).
constexpr uint64_t kMaxTensorBytes = uint64_t(1) << 50;

struct DtypeEntry {
  StDtype t;
  const char* name;
  size_t size;
};
constexpr DtypeEntry kDtypes[] = {
    {StDtype::kBool, "BOOL", 1},      {StDtype::kU8, "U8", 1},          {StDtype::kI8, "I8", 1},
    {StDtype::kF8E5M2, "F8_E5M2", 1}, {StDtype::kF8E4M3, "F8_E4M3", 1}, {StDtype::kF8E8M0, "F8_E8M0", 1},
    {StDtype::kI16, "I16", 2},        {StDtype::kU16, "U16", 2},        {StDtype::kF16, "F16", 2},
    {StDtype::kBF16, "BF16", 2},      {StDtype::kI32, "I32", 4},        {StDtype::kU32, "U32", 4},
    {StDtype::kF32, "F32", 4},        {StDtype::kF64, "F64", 8},        {StDtype::kI64, "I64", 8},
    {StDtype::kU64, "U64", 8},
};

const DtypeEntry& entry(StDtype t) {
  for (const DtypeEntry& e : kDtypes)
    if (e.t == t) return e;
  fail("unknown safetensors dtype ", static_cast<int>(t));
}

// Rejects nesting deeper than kMaxJsonDepth before the JSON parser sees the bytes.
bool json_depth_ok(const uint8_t* p, size_t n) {
  int depth = 0;
  bool in_string = false, escape = false;
  for (size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(p[i]);
    if (in_string) {
      if (escape)
        escape = false;
      else if (c == '\\')
        escape = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// A non-negative JSON integer that fits in int64 (rejects floats, negatives, booleans).
bool json_uint(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  }
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < 0) return false;
    *out = static_cast<uint64_t>(x);
    return true;
  }
  return false;
}

std::string lexically_inside(const std::string& dir, const std::string& rel, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path p(rel);
  MOE_CHECK(!rel.empty() && rel.find('\0') == std::string::npos, dir, ": ", what, ": empty shard file name");
  MOE_CHECK(p.is_relative() && !p.has_root_name() && !p.has_root_directory(), dir, ": ", what, ": shard '",
            rel, "' is not a relative path inside the model directory");
  for (const fs::path& part : p) {
    MOE_CHECK(part != "..", dir, ": ", what, ": shard '", rel, "' escapes the model directory");
  }
  return (fs::path(dir) / p).string();
}

struct Fp8Table {
  float v[256];
  Fp8Table() {
    for (int i = 0; i < 256; ++i) {
      const int sign = i >> 7, exp = (i >> 3) & 15, mant = i & 7;
      float x;
      if (exp == 15 && mant == 7)
        x = std::numeric_limits<float>::quiet_NaN();
      else if (exp == 0)
        x = std::ldexp(static_cast<float>(mant), -9);  // mant/8 * 2^-6
      else
        x = std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
      v[i] = sign ? -x : x;
    }
  }
};
const Fp8Table& fp8_table() {
  static const Fp8Table t;
  return t;
}

// Round to nearest (ties to the even code), saturating to +-448, the largest finite e4m3fn value.
uint8_t encode_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  const float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  const float* lut = fp8_table().v;
  int lo = 0, hi = 0x7e;  // codes 0..0x7e are increasing: find the first >= a
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (lut[mid] < a)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo > 0) {
    const float up = lut[lo] - a, down = a - lut[lo - 1];
    if (down < up || (down == up && (lo - 1) % 2 == 0)) --lo;
  }
  return static_cast<uint8_t>(sign | lo);
}

template <class Store>
void dequantize_fp8_impl(const uint8_t* q, int64_t rows, int64_t cols, const float* scale_inv, int64_t br,
                         int64_t bc, Store&& store) {
  MOE_CHECK(rows >= 0 && cols >= 0 && br > 0 && bc > 0, "fp8 dequantization: bad shape ", rows, "x", cols,
            " or block ", br, "x", bc);
  const float* lut = fp8_table().v;
  const int64_t scols = (cols + bc - 1) / bc;
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scale_inv + (r / br) * scols;
    const uint8_t* qrow = q + r * cols;
    for (int64_t c = 0; c < cols; ++c) store(r * cols + c, lut[qrow[c]] * srow[c / bc]);
  }
}

}  // namespace

// ---- dtypes ----

const char* st_dtype_name(StDtype t) { return entry(t).name; }
size_t st_dtype_size(StDtype t) { return entry(t).size; }

std::optional<StDtype> st_dtype_from_name(const std::string& name) {
  for (const DtypeEntry& e : kDtypes)
    if (name == e.name) return e.t;
  return std::nullopt;
}

std::optional<DType> st_dtype_to_dtype(StDtype t) {
  switch (t) {
    case StDtype::kF32:
      return DType::F32;
    case StDtype::kF16:
      return DType::F16;
    case StDtype::kBF16:
      return DType::BF16;
    default:
      return std::nullopt;
  }
}

int64_t SafetensorsTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- reader ----

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->file_ = std::make_unique<MappedFile>(path);
  f->parse(f->file_->data(), f->file_->size());
  return f;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::from_bytes(const uint8_t* data, size_t size,
                                                                   std::string name) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = std::move(name);
  f->parse(data, size);
  return f;
}

void SafetensorsFile::parse(const uint8_t* data, size_t size) {
  const std::string& p = path_;
  MOE_CHECK(size >= 8, p, ": not a safetensors file (", size,
            " bytes, shorter than the 8-byte header length)");
  const uint64_t n = read_u64_le(data);
  MOE_CHECK(n <= kMaxHeaderBytes, p, ": header length ", n, " exceeds the limit of ", kMaxHeaderBytes,
            " bytes");
  MOE_CHECK(n <= size - 8, p, ": header length ", n, " runs past the end of the file (", size, " bytes)");
  const uint8_t* hdr = data + 8;
  MOE_CHECK(json_depth_ok(hdr, n), p, ": header JSON is nested deeper than ", kMaxJsonDepth, " levels");
  json root;
  try {
    root = json::parse(hdr, hdr + n);
  } catch (const json::exception& e) {
    fail(p, ": header is not valid JSON: ", e.what());
  }
  MOE_CHECK(root.is_object(), p, ": header is not a JSON object");
  const uint8_t* base = hdr + n;
  const uint64_t data_size = size - 8 - n;

  for (const auto& [name, v] : root.items()) {
    if (name == "__metadata__") {
      MOE_CHECK(v.is_object(), p, ": __metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        MOE_CHECK(s.is_string(), p, ": __metadata__ value of '", k, "' is not a string");
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "'";
    MOE_CHECK(v.is_object(), where, ": entry is not an object");
    SafetensorsTensor t;
    t.name = name;
    t.file = p;
    const auto dt = v.find("dtype");
    MOE_CHECK(dt != v.end() && dt->is_string(), where, ": missing or non-string dtype");
    const std::optional<StDtype> st = st_dtype_from_name(dt->get<std::string>());
    MOE_CHECK(st.has_value(), where, ": unknown dtype '", dt->get<std::string>(), "'");
    t.dtype = *st;
    const auto sh = v.find("shape");
    MOE_CHECK(sh != v.end() && sh->is_array(), where, ": missing or non-array shape");
    MOE_CHECK(sh->size() <= 8, where, ": ", sh->size(), " dimensions (at most 8 supported)");
    const uint64_t esz = st_dtype_size(t.dtype);
    uint64_t bytes = esz;
    for (const json& d : *sh) {
      uint64_t x = 0;
      MOE_CHECK(json_uint(d, &x), where, ": shape entries must be non-negative integers");
      // bytes * x <= kMaxTensorBytes, checked without overflow (x == 0 makes the tensor empty).
      MOE_CHECK(x == 0 || bytes <= kMaxTensorBytes / x, where, ": shape ", sh->dump(), " is too large");
      bytes = x == 0 ? 0 : bytes * x;
      t.shape.push_back(static_cast<int64_t>(x));
    }
    const auto off = v.find("data_offsets");
    MOE_CHECK(off != v.end() && off->is_array() && off->size() == 2, where,
              ": data_offsets must be an array [begin, end]");
    uint64_t b = 0, e = 0;
    MOE_CHECK(json_uint((*off)[0], &b) && json_uint((*off)[1], &e), where,
              ": data_offsets must be non-negative integers");
    MOE_CHECK(b <= e, where, ": data_offsets [", b, ", ", e, "] has begin after end");
    MOE_CHECK(e <= data_size, where, ": data_offsets [", b, ", ", e, "] run past the data section (",
              data_size, " bytes)");
    MOE_CHECK(e - b == bytes, where, ": ", e - b, " bytes of data, but ", st_dtype_name(t.dtype), " ",
              sh->dump(), " takes ", bytes);
    t.data = base + b;
    t.n_bytes = static_cast<size_t>(bytes);
    tensors_.push_back(std::move(t));
  }
  std::sort(tensors_.begin(), tensors_.end(), [base](const SafetensorsTensor& a, const SafetensorsTensor& b) {
    return a.data != b.data ? a.data < b.data : a.name < b.name;
  });
  const uint8_t* end = base;
  const SafetensorsTensor* prev = nullptr;
  for (const SafetensorsTensor& t : tensors_) {
    if (t.n_bytes == 0) continue;
    MOE_CHECK(t.data >= end, p, ": tensors '", prev ? prev->name : "", "' and '", t.name, "' overlap");
    end = t.data + t.n_bytes;
    prev = &t;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// ---- directory ----

const SafetensorsTensor* SafetensorsDir::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::unique_ptr<SafetensorsDir> open_safetensors_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MOE_CHECK(fs::is_directory(dir, ec), dir, ": not a directory");
  std::unique_ptr<SafetensorsDir> out(new SafetensorsDir());
  out->dir_ = dir;
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single = fs::path(dir) / "model.safetensors";

  if (fs::exists(index_path, ec)) {
    const std::string ip = index_path.string();
    std::ifstream in(ip, std::ios::binary);
    MOE_CHECK(in.good(), ip, ": cannot open");
    json root;
    try {
      root = json::parse(in);
    } catch (const json::exception& e) {
      fail(ip, ": not valid JSON: ", e.what());
    }
    MOE_CHECK(root.is_object() && root.contains("weight_map") && root["weight_map"].is_object(), ip,
              ": no weight_map object");
    std::map<std::string, std::string> weight_map;  // tensor -> shard
    std::vector<std::string> shards;                // first-seen order
    for (const auto& [name, shard] : root["weight_map"].items()) {
      MOE_CHECK(shard.is_string(), ip, ": weight_map entry for '", name, "' is not a string");
      const std::string s = shard.get<std::string>();
      lexically_inside(dir, s, "model.safetensors.index.json");
      weight_map.emplace(name, s);
      if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
    }
    std::sort(shards.begin(), shards.end());
    std::map<std::string, const SafetensorsFile*> by_shard;
    for (const std::string& s : shards) {
      const std::string path = lexically_inside(dir, s, "model.safetensors.index.json");
      MOE_CHECK(fs::is_regular_file(path, ec), dir, ": shard '", s,
                "' named in model.safetensors.index.json is missing");
      out->files_.push_back(SafetensorsFile::open(path));
      by_shard[s] = out->files_.back().get();
    }
    for (const auto& [name, s] : weight_map) {
      MOE_CHECK(by_shard[s]->find(name) != nullptr, dir, ": tensor '", name, "' is not in its shard '", s,
                "' (model.safetensors.index.json)");
    }
    for (const auto& f : out->files_) {
      for (const SafetensorsTensor& t : f->tensors()) {
        const auto it = weight_map.find(t.name);
        MOE_CHECK(it != weight_map.end(), t.file, ": tensor '", t.name,
                  "' is not listed in model.safetensors.index.json");
        if (by_shard[it->second] != f.get()) continue;  // listed under another shard, which has it too
        out->tensors_.push_back(&t);
        out->index_.emplace(t.name, &t);
      }
    }
    return out;
  }

  std::vector<std::string> paths;
  if (fs::exists(single, ec)) {
    paths.push_back(single.string());
  } else {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) paths.push_back(e.path().string());
    }
    std::sort(paths.begin(), paths.end());
  }
  MOE_CHECK(!paths.empty(), dir,
            ": no model.safetensors.index.json, model.safetensors or *.safetensors files");
  for (const std::string& path : paths) {
    out->files_.push_back(SafetensorsFile::open(path));
    for (const SafetensorsTensor& t : out->files_.back()->tensors()) {
      const auto [it, inserted] = out->index_.emplace(t.name, &t);
      MOE_CHECK(inserted, dir, ": tensor '", t.name, "' is in both ", it->second->file, " and ", t.file);
      out->tensors_.push_back(&t);
    }
  }
  return out;
}

// ---- writer ----

void SafetensorsWriter::add(const std::string& name, StDtype dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t n_bytes) {
  MOE_CHECK(!name.empty() && name != "__metadata__", "safetensors writer: bad tensor name '", name, "'");
  for (const Pending& t : tensors_)
    MOE_CHECK(t.name != name, "safetensors writer: duplicate tensor '", name, "'");
  uint64_t bytes = st_dtype_size(dtype);
  for (int64_t d : shape) {
    MOE_CHECK(d >= 0 && (d == 0 || bytes <= kMaxTensorBytes / static_cast<uint64_t>(d)),
              "safetensors writer: tensor '", name, "' has a bad shape");
    bytes *= static_cast<uint64_t>(d);
  }
  MOE_CHECK(bytes == n_bytes, "safetensors writer: tensor '", name, "': ", n_bytes, " bytes given, ", bytes,
            " expected");
  MOE_CHECK(data != nullptr || n_bytes == 0, "safetensors writer: tensor '", name, "' has no data");
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({name, dtype, shape, std::vector<uint8_t>(p, p + n_bytes)});
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& values) {
  add(name, StDtype::kF32, shape, values.data(), values.size() * sizeof(float));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t off = 0;
  for (const Pending& t : tensors_) {
    header[t.name] = {
        {"dtype", st_dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // the Python library pads the header to 8 bytes
  std::vector<uint8_t> out;
  out.reserve(8 + h.size() + off);
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
  out.insert(out.end(), h.begin(), h.end());
  for (const Pending& t : tensors_) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::vector<uint8_t> bytes = to_bytes();
  write_file_atomic(path, bytes.data(), bytes.size());
}

// ---- FP8 ----

float fp8_e4m3_to_fp32(uint8_t v) { return fp8_table().v[v]; }

uint8_t fp32_to_fp8_e4m3(float f) { return encode_e4m3(f); }

void dequantize_fp8_blocks(const uint8_t* q, int64_t rows, int64_t cols, const float* scale_inv,
                           int64_t block_rows, int64_t block_cols, float* out) {
  dequantize_fp8_impl(q, rows, cols, scale_inv, block_rows, block_cols,
                      [out](int64_t i, float v) { out[i] = v; });
}

void dequantize_fp8_blocks_bf16(const uint8_t* q, int64_t rows, int64_t cols, const float* scale_inv,
                                int64_t block_rows, int64_t block_cols, uint16_t* out) {
  dequantize_fp8_impl(q, rows, cols, scale_inv, block_rows, block_cols,
                      [out](int64_t i, float v) { out[i] = fp32_to_bf16(v); });
}

}  // namespace moe
