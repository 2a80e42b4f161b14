#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "core/file_util.h"

namespace moe {

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" as a little-endian u32
constexpr uint32_t kMaxTypeId = static_cast<uint32_t>(GgufType::FLOAT64);
constexpr uint32_t kDefaultAlignment = 32;
constexpr const char* kAlignmentKey = "general.alignment";
constexpr int kMaxArrayDepth = 8;
// Bounds the memory a metadata section can make us allocate (each element is a GgufValue, about
// 80 bytes, however few bytes it takes in the file). Real tokenizers hold well under 1M.
constexpr uint64_t kMaxMetadataElems = uint64_t{1} << 24;
constexpr int kMaxDims = 4;
constexpr size_t kMaxNameBytes = 65535;
constexpr size_t kMaxWriterTensorName = 63;  // llama.cpp's GGML_MAX_NAME - 1
constexpr size_t kMinDisplayChars = 64;
// Smallest possible encodings: key string of 1 byte + type + u8 value; name of 1 byte + n_dims +
// one dim + type + offset. They bound n_kv and n_tensors before anything is allocated.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

bool is_signed_int(GgufType t) {
  return t == GgufType::INT8 || t == GgufType::INT16 || t == GgufType::INT32 || t == GgufType::INT64;
}

struct TypeInfo {
  const char* name;
  uint64_t min_bytes;  // of one encoded value: exact for scalars, the minimum for strings and arrays
};
// Indexed by GgufType. A string is at least its u64 length, an array its elem type and count.
constexpr TypeInfo kTypeInfo[] = {{"u8", 1},  {"i8", 1},  {"u16", 2},  {"i16", 2},    {"u32", 4},
                                  {"i32", 4}, {"f32", 4}, {"bool", 1}, {"string", 8}, {"array", 12},
                                  {"u64", 8}, {"i64", 8}, {"f64", 8}};
static_assert(std::size(kTypeInfo) == kMaxTypeId + 1);

uint64_t min_value_bytes(GgufType t) { return kTypeInfo[static_cast<uint32_t>(t)].min_bytes; }

std::string hex(uint64_t v) {
  char buf[20];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, 16);
  return "0x" + std::string(buf, r.ptr);
}

// Quoted, with control characters escaped, cut after max_bytes (at a UTF-8 boundary).
std::string quote(const std::string& s, size_t max_bytes = SIZE_MAX) {
  size_t n = s.size();
  if (n > max_bytes) {
    n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  }
  std::string out = "\"";
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const char* esc = c == '"'    ? "\\\""
                      : c == '\\' ? "\\\\"
                      : c == '\n' ? "\\n"
                      : c == '\t' ? "\\t"
                      : c == '\r' ? "\\r"
                                  : nullptr;
    if (esc != nullptr) {
      out += esc;
    } else if (c < 0x20 || c == 0x7f) {
      static const char kDigits[] = "0123456789abcdef";
      out += {'\\', 'x', kDigits[c >> 4], kDigits[c & 15]};
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (n < s.size()) out += str_cat("... (", s.size(), " bytes)");
  return out;
}

template <class T>
std::string shortest(T v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string type_desc(const GgufValue& v) {
  if (v.type() != GgufType::ARRAY) return gguf_type_name(v.type());
  return str_cat("array of ", gguf_type_name(v.elem_type()));
}

// Keys and tensor names: non-empty, bounded, printable (so that error messages can show them).
void check_name(const std::string& s, const char* what) {
  MOE_CHECK(!s.empty(), "empty ", what);
  MOE_CHECK(s.size() <= kMaxNameBytes, what, " of ", s.size(), " bytes (limit ", kMaxNameBytes, ")");
  for (const char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    MOE_CHECK(c >= 0x20 && c != 0x7f, what, " ", quote(s, 64), " contains control character ", hex(c));
  }
}

void check_alignment(uint64_t a) {
  MOE_CHECK(a != 0 && a <= UINT32_MAX && (a & (a - 1)) == 0, kAlignmentKey, " = ", a,
            " is not a power of two");
}

std::string shape_str(const int64_t* ne, int n_dims) {
  std::string s = "[";
  for (int i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// Bytes of a tensor of the given type and shape; throws when the shape is invalid or its size
// does not fit in size_t.
size_t tensor_bytes(uint32_t type_id, const int64_t* ne, int n_dims) {
  const DTypeTraits* tr = dtype_traits(type_id);
  MOE_CHECK(tr != nullptr, "unknown ggml tensor type id ", type_id);
  int64_t n = 1;
  for (int i = 0; i < n_dims; ++i) {
    MOE_CHECK(ne[i] > 0, "dimension ", i, " is ", ne[i], " in shape ", shape_str(ne, n_dims));
    MOE_CHECK(!__builtin_mul_overflow(n, ne[i], &n), "element count of shape ", shape_str(ne, n_dims),
              " overflows");
  }
  MOE_CHECK(ne[0] % tr->block_size == 0, "ne[0] = ", ne[0], " is not a multiple of ", tr->name,
            "'s block size ", tr->block_size);
  size_t bytes = 0;
  MOE_CHECK(!__builtin_mul_overflow(static_cast<uint64_t>(n / tr->block_size), tr->block_bytes, &bytes),
            "byte size of ", tr->name, " shape ", shape_str(ne, n_dims), " overflows");
  return bytes;
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Adds v's array elements (at any depth) to *elems; throws when v nests arrays deeper than the
// reader accepts, so the writer never produces a file the reader rejects.
void count_array_elems(const GgufValue& v, int depth, uint64_t* elems) {
  if (v.type() != GgufType::ARRAY) return;
  MOE_CHECK(depth < kMaxArrayDepth, "arrays nested more than ", kMaxArrayDepth, " levels deep");
  *elems += v.elems().size();
  for (const GgufValue& e : v.elems()) count_array_elems(e, depth + 1, elems);
}

// Bounds-checked little-endian reader. Its errors carry the offset but not the file name, which
// GgufFile::parse prefixes.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <class T>
  T read(const char* what) {
    if (sizeof(T) > remaining())
      fail("truncated ", what, " at offset ", pos_, " (needs ", sizeof(T), " bytes, ", remaining(), " left)");
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const char* what) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > remaining())
      fail(what, " at offset ", at, " has length ", n, " but only ", remaining(), " bytes are left");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

  GgufType read_type(const char* what) {
    const size_t at = pos_;
    const uint32_t t = read<uint32_t>(what);
    if (t > kMaxTypeId) fail("unknown ", what, " ", t, " at offset ", at);
    return static_cast<GgufType>(t);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

GgufValue read_value(Cursor& c, GgufType t, int depth, uint64_t& elems_left);

GgufValue read_scalar(Cursor& c, GgufType t) {
  // clang-format off
  switch (t) {
    case GgufType::UINT8: return GgufValue::u8(c.read<uint8_t>("u8"));
    case GgufType::INT8: return GgufValue::i8(c.read<int8_t>("i8"));
    case GgufType::UINT16: return GgufValue::u16(c.read<uint16_t>("u16"));
    case GgufType::INT16: return GgufValue::i16(c.read<int16_t>("i16"));
    case GgufType::UINT32: return GgufValue::u32(c.read<uint32_t>("u32"));
    case GgufType::INT32: return GgufValue::i32(c.read<int32_t>("i32"));
    case GgufType::UINT64: return GgufValue::u64(c.read<uint64_t>("u64"));
    case GgufType::INT64: return GgufValue::i64(c.read<int64_t>("i64"));
    case GgufType::FLOAT32: return GgufValue::f32(c.read<float>("f32"));
    case GgufType::FLOAT64: return GgufValue::f64(c.read<double>("f64"));
    case GgufType::BOOL: {
      const size_t at = c.pos();
      const uint8_t b = c.read<uint8_t>("bool");
      if (b > 1) fail("bool at offset ", at, " has value ", int{b}, " (must be 0 or 1)");
      return GgufValue::boolean(b != 0);
    }
    case GgufType::STRING:
    case GgufType::ARRAY:
      break;
  }
  // clang-format on
  fail("internal: ", gguf_type_name(t), " is not a scalar type");
}

GgufValue read_array(Cursor& c, int depth, uint64_t& elems_left) {
  const size_t start = c.pos();
  if (depth > kMaxArrayDepth)
    fail("array at offset ", start, " is nested more than ", kMaxArrayDepth, " levels deep");
  const GgufType et = c.read_type("array element type");
  const uint64_t n = c.read<uint64_t>("array length");
  const uint64_t min_bytes = min_value_bytes(et);
  if (n > c.remaining() / min_bytes)
    fail("array at offset ", start, " claims ", n, " elements of type ", gguf_type_name(et), " (at least ",
         min_bytes, " bytes each) but only ", c.remaining(), " bytes are left");
  if (n > elems_left)
    fail("array at offset ", start, " of ", n, " elements exceeds the limit of ", kMaxMetadataElems,
         " metadata array elements in a file");
  elems_left -= n;
  std::vector<GgufValue> elems;
  elems.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    try {
      elems.push_back(read_value(c, et, depth, elems_left));
    } catch (const Error& e) {
      fail("element ", i, ": ", e.what());
    }
  }
  return GgufValue::array(et, std::move(elems));
}

GgufValue read_value(Cursor& c, GgufType t, int depth, uint64_t& elems_left) {
  if (t == GgufType::STRING) return GgufValue::str(c.read_string("string"));
  if (t == GgufType::ARRAY) return read_array(c, depth + 1, elems_left);
  return read_scalar(c, t);
}

struct Parsed {
  uint32_t version = 0;
  uint32_t alignment = kDefaultAlignment;
  size_t data_offset = 0;
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::map<std::string, size_t> kv_index;
  std::vector<GgufTensorInfo> tensors;
  std::map<std::string, size_t> tensor_index;
};

void parse_metadata(Cursor& c, uint64_t n_kv, Parsed& p) {
  uint64_t elems_left = kMaxMetadataElems;
  p.kv.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const size_t at = c.pos();
    std::string key;
    try {
      key = c.read_string("key");
      check_name(key, "key");
    } catch (const Error& e) {
      fail("metadata entry ", i, " of ", n_kv, " at offset ", at, ": ", e.what());
    }
    if (p.kv_index.count(key)) fail("duplicate key '", key, "' at offset ", at);
    try {
      const GgufType t = c.read_type("value type");
      p.kv.emplace_back(key, read_value(c, t, 0, elems_left));
    } catch (const Error& e) {
      fail("key '", key, "': ", e.what());
    }
    p.kv_index.emplace(std::move(key), p.kv.size() - 1);
  }
  if (auto it = p.kv_index.find(kAlignmentKey); it != p.kv_index.end()) {
    const GgufValue& v = p.kv[it->second].second;
    if (v.type() != GgufType::UINT32)
      fail("key '", kAlignmentKey, "' has type ", type_desc(v), ", expected u32");
    check_alignment(v.as_uint());
    p.alignment = static_cast<uint32_t>(v.as_uint());
  }
}

void parse_tensor_infos(Cursor& c, uint64_t n_tensors, Parsed& p) {
  p.tensors.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const size_t at = c.pos();
    GgufTensorInfo info;
    try {
      info.name = c.read_string("tensor name");
      check_name(info.name, "tensor name");
    } catch (const Error& e) {
      fail("tensor info ", i, " of ", n_tensors, " at offset ", at, ": ", e.what());
    }
    if (p.tensor_index.count(info.name)) fail("duplicate tensor '", info.name, "' at offset ", at);
    try {
      const size_t dims_at = c.pos();
      const uint32_t n_dims = c.read<uint32_t>("n_dims");
      if (n_dims < 1 || n_dims > kMaxDims)
        fail("n_dims ", n_dims, " at offset ", dims_at, " is outside 1..", kMaxDims);
      info.n_dims = static_cast<int>(n_dims);
      for (uint32_t j = 0; j < n_dims; ++j) {
        const uint64_t d = c.read<uint64_t>("dimension");
        if (d == 0 || d > static_cast<uint64_t>(INT64_MAX))
          fail("dimension ", j, " at offset ", c.pos() - 8, " is ", static_cast<int64_t>(d));
        info.ne[j] = static_cast<int64_t>(d);
      }
      const size_t type_at = c.pos();
      const uint32_t type_id = c.read<uint32_t>("tensor type");
      if (dtype_traits(type_id) == nullptr)
        fail("unknown ggml tensor type id ", type_id, " at offset ", type_at);
      info.type = static_cast<DType>(type_id);
      info.offset = c.read<uint64_t>("tensor data offset");
      info.n_bytes = tensor_bytes(type_id, info.ne, info.n_dims);
    } catch (const Error& e) {
      fail("tensor '", info.name, "': ", e.what());
    }
    p.tensor_index.emplace(info.name, p.tensors.size());
    p.tensors.push_back(std::move(info));
  }
}

// Places the data section and checks every tensor's data lies inside it, aligned, disjoint.
void check_tensor_data(size_t header_end, size_t size, Parsed& p) {
  p.data_offset = align_up(header_end, p.alignment);
  if (p.tensors.empty()) return;  // nothing is read from the data section, which may be absent
  if (p.data_offset > size)
    fail("data section at offset ", p.data_offset, " (header ends at ", header_end, ", alignment ",
         p.alignment, ") is past end of file (", size, " bytes)");
  const uint64_t data_size = size - p.data_offset;
  for (const GgufTensorInfo& t : p.tensors) {
    if (t.offset % p.alignment != 0)
      fail("tensor '", t.name, "': data offset ", t.offset, " is not a multiple of the alignment ",
           p.alignment);
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      if (t.offset > size || t.n_bytes > size)
        fail("tensor '", t.name, "': data of ", t.n_bytes, " bytes at data offset ", t.offset,
             " is past end of file (", size, " bytes)");
      const uint64_t begin = p.data_offset + t.offset;
      fail("tensor '", t.name, "': data [", begin, ", ", begin + t.n_bytes, ") past end of file (", size,
           " bytes)");
    }
  }
  std::vector<size_t> order(p.tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return p.tensors[a].offset < p.tensors[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& a = p.tensors[order[i - 1]];
    const GgufTensorInfo& b = p.tensors[order[i]];
    if (a.offset + a.n_bytes > b.offset)
      fail("tensors '", a.name, "' and '", b.name, "' overlap: data [", p.data_offset + a.offset, ", ",
           p.data_offset + a.offset + a.n_bytes, ") and [", p.data_offset + b.offset, ", ",
           p.data_offset + b.offset + b.n_bytes, ")");
  }
}

Parsed parse_gguf(const uint8_t* data, size_t size) {
  Parsed p;
  Cursor c(data, size);
  if (size < 4) fail("not a GGUF file (", size, " bytes)");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) fail("not a GGUF file (magic ", hex(magic), ", expected 'GGUF')");
  p.version = c.read<uint32_t>("version");
  if (p.version == 1) fail("GGUF v1 is not supported (re-convert the model with a current tool)");
  if (p.version != 2 && p.version != 3) {
    const uint32_t swapped = __builtin_bswap32(p.version);
    if (swapped >= 1 && swapped <= 3) fail("big-endian GGUF files are not supported");
    fail("unsupported GGUF version ", p.version, " (expected 2 or 3)");
  }
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  const uint64_t left = c.remaining();
  if (n_kv > left / kMinKvBytes)
    fail("metadata count ", n_kv, " at offset 16 is impossible: only ", left, " bytes follow");
  if (n_tensors > left / kMinTensorInfoBytes || n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > left)
    fail("tensor count ", n_tensors, " at offset 8 is impossible with ", n_kv, " metadata entries: only ",
         left, " bytes follow");
  parse_metadata(c, n_kv, p);
  parse_tensor_infos(c, n_tensors, p);
  check_tensor_data(c.pos(), size, p);
  return p;
}

// Payload of a value (without the type tag of the top-level value).
void put_bytes(std::vector<uint8_t>& out, const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

template <class T>
void put(std::vector<uint8_t>& out, T v) {
  put_bytes(out, &v, sizeof v);
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  put_bytes(out, s.data(), s.size());
}

void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
  // clang-format off
  switch (v.type()) {
    case GgufType::UINT8: return put(out, static_cast<uint8_t>(v.as_uint()));
    case GgufType::INT8: return put(out, static_cast<int8_t>(v.as_int()));
    case GgufType::UINT16: return put(out, static_cast<uint16_t>(v.as_uint()));
    case GgufType::INT16: return put(out, static_cast<int16_t>(v.as_int()));
    case GgufType::UINT32: return put(out, static_cast<uint32_t>(v.as_uint()));
    case GgufType::INT32: return put(out, static_cast<int32_t>(v.as_int()));
    case GgufType::UINT64: return put(out, v.as_uint());
    case GgufType::INT64: return put(out, v.as_int());
    case GgufType::FLOAT32: return put(out, static_cast<float>(v.as_float()));
    case GgufType::FLOAT64: return put(out, v.as_float());
    case GgufType::BOOL: return put<uint8_t>(out, v.as_bool() ? 1 : 0);
    case GgufType::STRING:
      return put_string(out, v.as_string());
    case GgufType::ARRAY:
      put(out, static_cast<uint32_t>(v.elem_type()));
      put<uint64_t>(out, v.elems().size());
      for (const GgufValue& e : v.elems()) put_value(out, e);
      return;
  }
  // clang-format on
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  const auto id = static_cast<uint32_t>(t);
  return id <= kMaxTypeId ? kTypeInfo[id].name : "unknown";
}

// ---------------------------------------------------------------------------------------------
// GgufValue

template <class T>
GgufValue GgufValue::scalar(GgufType t, T v) {
  GgufValue r;
  r.type_ = t;
  if constexpr (std::is_floating_point_v<T>) {
    r.bits_ = std::bit_cast<uint64_t>(static_cast<double>(v));
  } else if constexpr (std::is_signed_v<T>) {
    r.bits_ = static_cast<uint64_t>(static_cast<int64_t>(v));
  } else {
    r.bits_ = static_cast<uint64_t>(v);
  }
  return r;
}

// The header's inline factories call these; the definition lives here.
template GgufValue GgufValue::scalar<uint8_t>(GgufType, uint8_t);
template GgufValue GgufValue::scalar<int8_t>(GgufType, int8_t);
template GgufValue GgufValue::scalar<uint16_t>(GgufType, uint16_t);
template GgufValue GgufValue::scalar<int16_t>(GgufType, int16_t);
template GgufValue GgufValue::scalar<uint32_t>(GgufType, uint32_t);
template GgufValue GgufValue::scalar<int32_t>(GgufType, int32_t);
template GgufValue GgufValue::scalar<uint64_t>(GgufType, uint64_t);
template GgufValue GgufValue::scalar<int64_t>(GgufType, int64_t);
template GgufValue GgufValue::scalar<float>(GgufType, float);
template GgufValue GgufValue::scalar<double>(GgufType, double);

GgufValue GgufValue::str(std::string v) {
  GgufValue r;
  r.type_ = GgufType::STRING;
  r.str_ = std::move(v);
  return r;
}

GgufValue GgufValue::array(GgufType elem_type, std::vector<GgufValue> elems) {
  MOE_CHECK(static_cast<uint32_t>(elem_type) <= kMaxTypeId, "unknown array element type ",
            static_cast<uint32_t>(elem_type));
  for (size_t i = 0; i < elems.size(); ++i)
    MOE_CHECK(elems[i].type() == elem_type, "array of ", gguf_type_name(elem_type), ": element ", i,
              " has type ", gguf_type_name(elems[i].type()));
  GgufValue r;
  r.type_ = GgufType::ARRAY;
  r.elem_type_ = elem_type;
  r.elems_ = std::move(elems);
  return r;
}

GgufValue GgufValue::str_array(const std::vector<std::string>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (const std::string& s : v) elems.push_back(str(s));
  return array(GgufType::STRING, std::move(elems));
}

GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (float x : v) elems.push_back(f32(x));
  return array(GgufType::FLOAT32, std::move(elems));
}

GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  std::vector<GgufValue> elems;
  elems.reserve(v.size());
  for (int32_t x : v) elems.push_back(i32(x));
  return array(GgufType::INT32, std::move(elems));
}

bool GgufValue::is_integer() const {
  return type_ <= GgufType::INT32 || type_ == GgufType::UINT64 || type_ == GgufType::INT64;
}

bool GgufValue::is_number() const {
  return is_integer() || type_ == GgufType::FLOAT32 || type_ == GgufType::FLOAT64;
}

int64_t GgufValue::as_int() const {
  MOE_CHECK(is_integer(), "expected an integer, got ", type_desc(*this));
  MOE_CHECK(type_ != GgufType::UINT64 || bits_ <= static_cast<uint64_t>(INT64_MAX), "u64 value ", bits_,
            " does not fit in int64");
  return static_cast<int64_t>(bits_);
}

uint64_t GgufValue::as_uint() const {
  MOE_CHECK(is_integer(), "expected an integer, got ", type_desc(*this));
  MOE_CHECK(!is_signed_int(type_) || static_cast<int64_t>(bits_) >= 0, "expected a non-negative ",
            "integer, got ", static_cast<int64_t>(bits_));
  return bits_;
}

double GgufValue::as_float() const {
  if (type_ == GgufType::FLOAT32 || type_ == GgufType::FLOAT64) return std::bit_cast<double>(bits_);
  MOE_CHECK(is_integer(), "expected a number, got ", type_desc(*this));
  return is_signed_int(type_) ? static_cast<double>(static_cast<int64_t>(bits_)) : static_cast<double>(bits_);
}

bool GgufValue::as_bool() const {
  MOE_CHECK(type_ == GgufType::BOOL, "expected a bool, got ", type_desc(*this));
  return bits_ != 0;
}

const std::string& GgufValue::as_string() const {
  MOE_CHECK(type_ == GgufType::STRING, "expected a string, got ", type_desc(*this));
  return str_;
}

const std::vector<GgufValue>& GgufValue::elems() const {
  MOE_CHECK(type_ == GgufType::ARRAY, "expected an array, got ", type_desc(*this));
  return elems_;
}

std::vector<std::string> GgufValue::as_string_array() const {
  MOE_CHECK(type_ == GgufType::ARRAY && elem_type_ == GgufType::STRING, "expected an array of strings, got ",
            type_desc(*this));
  std::vector<std::string> out;
  out.reserve(elems_.size());
  for (const GgufValue& e : elems_) out.push_back(e.str_);
  return out;
}

std::vector<float> GgufValue::as_float_array() const {
  MOE_CHECK(type_ == GgufType::ARRAY, "expected an array of numbers, got ", type_desc(*this));
  std::vector<float> out;
  out.reserve(elems_.size());
  for (const GgufValue& e : elems_) {
    MOE_CHECK(e.is_number(), "expected an array of numbers, got ", type_desc(*this));
    out.push_back(static_cast<float>(e.as_float()));
  }
  return out;
}

std::vector<int64_t> GgufValue::as_int_array() const {
  MOE_CHECK(type_ == GgufType::ARRAY, "expected an array of integers, got ", type_desc(*this));
  std::vector<int64_t> out;
  out.reserve(elems_.size());
  for (const GgufValue& e : elems_) {
    MOE_CHECK(e.is_integer(), "expected an array of integers, got ", type_desc(*this));
    out.push_back(e.as_int());
  }
  return out;
}

// Strings are cut after max(64, max_elems) bytes, so max_elems = SIZE_MAX shows everything.
std::string GgufValue::to_display(size_t max_elems) const {
  switch (type_) {
    case GgufType::STRING:
      return quote(str_, std::max(kMinDisplayChars, max_elems));
    case GgufType::BOOL:
      return bits_ ? "true" : "false";
    case GgufType::FLOAT32:
      return shortest(static_cast<float>(std::bit_cast<double>(bits_)));
    case GgufType::FLOAT64:
      return shortest(std::bit_cast<double>(bits_));
    case GgufType::ARRAY: {
      std::string s = "[";
      const size_t shown = std::min(max_elems, elems_.size());
      for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + elems_[i].to_display(max_elems);
      if (shown < elems_.size()) s += str_cat(shown ? ", " : "", "... (", elems_.size(), ")");
      return s + "]";
    }
    default:
      return is_signed_int(type_) ? std::to_string(static_cast<int64_t>(bits_)) : std::to_string(bits_);
  }
}

// ---------------------------------------------------------------------------------------------
// GgufFile

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto mapped = std::make_unique<MappedFile>(path);
  auto f = std::make_unique<GgufFile>(mapped->data(), mapped->size(), path);
  f->file_ = std::move(mapped);
  return f;
}

GgufFile::GgufFile(const uint8_t* data, size_t size, std::string name)
    : data_(data), size_(size), name_(std::move(name)) {
  parse();
}

std::unique_ptr<GgufFile> GgufFile::from_parts(std::string name,
                                               std::vector<std::pair<std::string, GgufValue>> kv,
                                               std::vector<GgufTensorInfo> tensors,
                                               std::vector<std::shared_ptr<const void>> keep_alive) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = std::move(name);
  f->version_ = 3;
  for (auto& [key, value] : kv) {
    MOE_CHECK(f->kv_index_.emplace(key, f->kv_.size()).second, f->name_, ": duplicate key '", key, "'");
    f->kv_.emplace_back(key, std::move(value));
  }
  for (GgufTensorInfo& t : tensors) {
    MOE_CHECK(t.external != nullptr, f->name_, ": tensor '", t.name, "' has no data");
    MOE_CHECK(f->tensor_index_.emplace(t.name, f->tensors_.size()).second, f->name_, ": duplicate tensor '",
              t.name, "'");
    f->tensors_.push_back(std::move(t));
  }
  f->keep_alive_ = std::move(keep_alive);
  return f;
}

void GgufFile::parse() {
  Parsed p;
  try {
    p = parse_gguf(data_, size_);
  } catch (const Error& e) {
    fail(name_, ": ", e.what());
  }
  version_ = p.version;
  alignment_ = p.alignment;
  data_offset_ = p.data_offset;
  kv_ = std::move(p.kv);
  kv_index_ = std::move(p.kv_index);
  tensors_ = std::move(p.tensors);
  tensor_index_ = std::move(p.tensor_index);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  MOE_CHECK(v != nullptr, name_, ": missing key '", key, "'");
  return *v;
}

namespace {
template <class F>
auto typed_get(const GgufFile& f, const std::string& key, F&& convert) {
  try {
    return convert(f.get(key));
  } catch (const Error& e) {
    fail(f.name(), ": key '", key, "': ", e.what());
  }
}
}  // namespace

std::string GgufFile::get_string(const std::string& key, const std::string& dflt) const {
  if (!find(key)) return dflt;
  return typed_get(*this, key, [](const GgufValue& v) { return v.as_string(); });
}

int64_t GgufFile::get_int(const std::string& key, int64_t dflt) const {
  if (!find(key)) return dflt;
  return typed_get(*this, key, [](const GgufValue& v) { return v.as_int(); });
}

double GgufFile::get_float(const std::string& key, double dflt) const {
  if (!find(key)) return dflt;
  return typed_get(*this, key, [](const GgufValue& v) { return v.as_float(); });
}

bool GgufFile::get_bool(const std::string& key, bool dflt) const {
  if (!find(key)) return dflt;
  return typed_get(*this, key, [](const GgufValue& v) { return v.as_bool(); });
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t* GgufFile::tensor_data(const GgufTensorInfo& info) const {
  if (info.external != nullptr) return info.external;
  // info may come from elsewhere than tensors(); never hand out a pointer outside the file.
  MOE_CHECK(data_offset_ <= size_ && info.offset <= size_ - data_offset_ &&
                info.n_bytes <= size_ - data_offset_ - info.offset,
            name_, ": tensor '", info.name, "': data offset ", info.offset, " + ", info.n_bytes,
            " bytes is outside the data section");
  return data_ + data_offset_ + info.offset;
}

Tensor GgufFile::tensor(const GgufTensorInfo& info) const {
  Tensor t;
  t.name = info.name;
  t.type = info.type;
  t.n_dims = info.n_dims;
  std::copy(std::begin(info.ne), std::end(info.ne), std::begin(t.ne));
  t.data = tensor_data(info);
  set_contiguous_strides(t);
  return t;
}

// ---------------------------------------------------------------------------------------------
// GgufWriter

void GgufWriter::set(const std::string& key, GgufValue value) {
  check_name(key, "key");
  uint64_t elems = 0;
  try {
    count_array_elems(value, 0, &elems);
  } catch (const Error& e) {
    fail("key '", key, "': ", e.what());
  }
  if (key == kAlignmentKey) {
    MOE_CHECK(value.type() == GgufType::UINT32, "key '", key, "' must be u32, got ", type_desc(value));
    check_alignment(value.as_uint());
    alignment_ = static_cast<uint32_t>(value.as_uint());
  }
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::set_alignment(uint32_t a) { set(kAlignmentKey, GgufValue::u32(a)); }

void GgufWriter::add_tensor(const std::string& name, DType type, const std::vector<int64_t>& ne,
                            const void* data, size_t n_bytes) {
  check_name(name, "tensor name");
  MOE_CHECK(name.size() <= kMaxWriterTensorName, "tensor name '", name, "' is longer than ",
            kMaxWriterTensorName, " bytes (llama.cpp's limit)");
  for (const PendingTensor& t : tensors_) MOE_CHECK(t.info.name != name, "duplicate tensor '", name, "'");
  MOE_CHECK(!ne.empty() && ne.size() <= kMaxDims, "tensor '", name, "': ", ne.size(),
            " dimensions (must be 1..", kMaxDims, ")");
  GgufTensorInfo info;
  info.name = name;
  info.type = type;
  info.n_dims = static_cast<int>(ne.size());
  std::copy(ne.begin(), ne.end(), info.ne);
  try {
    info.n_bytes = tensor_bytes(static_cast<uint32_t>(type), info.ne, info.n_dims);
  } catch (const Error& e) {
    fail("tensor '", name, "': ", e.what());
  }
  MOE_CHECK(n_bytes == info.n_bytes, "tensor '", name, "': ", n_bytes, " bytes given, but ", dtype_name(type),
            " ", shape_str(info.ne, info.n_dims), " takes ", info.n_bytes);
  MOE_CHECK(data != nullptr, "tensor '", name, "': no data");
  const auto* p = static_cast<const uint8_t*>(data);
  tensors_.push_back({std::move(info), std::vector<uint8_t>(p, p + n_bytes)});
}

namespace {

// Header (through the padding before the data section) for tensors laid out at infos' offsets.
std::vector<uint8_t> header_bytes(const std::vector<std::pair<std::string, GgufValue>>& kv,
                                  const std::vector<GgufTensorInfo>& infos, uint32_t alignment) {
  uint64_t elems = 0;
  for (const auto& [key, value] : kv) count_array_elems(value, 0, &elems);
  MOE_CHECK(elems <= kMaxMetadataElems, "metadata holds ", elems, " array elements, more than the limit of ",
            kMaxMetadataElems);
  std::vector<uint8_t> out;
  put(out, kMagic);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, infos.size());
  put<uint64_t>(out, kv.size());
  for (const auto& [key, value] : kv) {
    put_string(out, key);
    put(out, static_cast<uint32_t>(value.type()));
    put_value(out, value);
  }
  for (const GgufTensorInfo& t : infos) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.n_dims));
    for (int j = 0; j < t.n_dims; ++j) put<uint64_t>(out, static_cast<uint64_t>(t.ne[j]));
    put(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, t.offset);
  }
  out.resize(align_up(out.size(), alignment), 0);
  return out;
}

// Tensor infos with data offsets assigned in order, each aligned.
template <class Pending>
std::vector<GgufTensorInfo> layout(const std::vector<Pending>& tensors, uint32_t alignment) {
  std::vector<GgufTensorInfo> infos;
  infos.reserve(tensors.size());
  uint64_t offset = 0;
  for (const Pending& t : tensors) {
    infos.push_back(t.info);
    infos.back().offset = offset;
    offset = align_up(offset + t.bytes.size(), alignment);
  }
  return infos;
}

}  // namespace

// Each tensor starts aligned and is followed by zero padding up to the next alignment boundary,
// as llama.cpp and gguf-py write it.
std::vector<uint8_t> GgufWriter::to_bytes() const {
  std::vector<uint8_t> out = header_bytes(kv_, layout(tensors_, alignment_), alignment_);
  for (const PendingTensor& t : tensors_) {
    put_bytes(out, t.bytes.data(), t.bytes.size());
    out.resize(align_up(out.size(), alignment_), 0);
  }
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const std::vector<uint8_t> header = header_bytes(kv_, layout(tensors_, alignment_), alignment_);
  const std::vector<uint8_t> zeros(alignment_, 0);
  AtomicFile f(path);
  f.write(header.data(), header.size());
  for (const PendingTensor& t : tensors_) {
    f.write(t.bytes.data(), t.bytes.size());
    f.write(zeros.data(), align_up(t.bytes.size(), alignment_) - t.bytes.size());
  }
  f.commit();
}

}  // namespace moe
