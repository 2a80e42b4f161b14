#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "testdata.h"

namespace moe {
namespace {

using Bytes = std::vector<uint8_t>;
using V = GgufValue;

constexpr const char* kName = "fuzz.gguf";

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// Recursive equality, floats compared bit for bit.
void expect_same(const GgufValue& a, const GgufValue& b, const std::string& where) {
  ASSERT_EQ(a.type(), b.type()) << where;
  switch (a.type()) {
    case GgufType::STRING:
      EXPECT_EQ(a.as_string(), b.as_string()) << where;
      break;
    case GgufType::ARRAY:
      ASSERT_EQ(a.elem_type(), b.elem_type()) << where;
      ASSERT_EQ(a.elems().size(), b.elems().size()) << where;
      for (size_t i = 0; i < a.elems().size(); ++i)
        expect_same(a.elems()[i], b.elems()[i], where + "[" + std::to_string(i) + "]");
      break;
    case GgufType::BOOL:
      EXPECT_EQ(a.as_bool(), b.as_bool()) << where;
      break;
    case GgufType::FLOAT32:
    case GgufType::FLOAT64: {
      const double x = a.as_float(), y = b.as_float();
      EXPECT_EQ(std::memcmp(&x, &y, sizeof x), 0) << where << ": " << x << " vs " << y;
      break;
    }
    default:
      EXPECT_EQ(a.to_display(), b.to_display()) << where;
      if (a.type() == GgufType::UINT64) {
        EXPECT_EQ(a.as_uint(), b.as_uint()) << where;
      }
  }
}

Bytes random_bytes(size_t n, std::mt19937& rng) {
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

// Every value type, extremes, empty and nested containers.
std::vector<std::pair<std::string, GgufValue>> all_types_metadata() {
  return {
      {"general.architecture", V::str("llama")},
      {"t.empty_string", V::str("")},
      {"t.utf8_string", V::str("h\xc3\xa9llo \"w\"\n\x01")},
      {"t.u8", V::u8(255)},
      {"t.i8", V::i8(-128)},
      {"t.u16", V::u16(65535)},
      {"t.i16", V::i16(-32768)},
      {"t.u32", V::u32(0xFFFFFFFFu)},
      {"t.i32", V::i32(std::numeric_limits<int32_t>::min())},
      {"t.u64.max", V::u64(std::numeric_limits<uint64_t>::max())},
      {"t.u64.zero", V::u64(0)},
      {"t.i64.min", V::i64(std::numeric_limits<int64_t>::min())},
      {"t.i64.max", V::i64(std::numeric_limits<int64_t>::max())},
      {"t.f32", V::f32(-1.5e-5f)},
      {"t.f32.inf", V::f32(std::numeric_limits<float>::infinity())},
      {"t.f32.negzero", V::f32(-0.0f)},
      {"t.f64", V::f64(3.141592653589793)},
      {"t.f64.denorm", V::f64(std::numeric_limits<double>::denorm_min())},
      {"t.bool.true", V::boolean(true)},
      {"t.bool.false", V::boolean(false)},
      {"t.arr.str", V::str_array({"a", "", "\xe2\x96\x81the", std::string("nul\0in", 6)})},
      {"t.arr.f32", V::f32_array({0.5f, -2.0f, 1e30f})},
      {"t.arr.i32", V::i32_array({1, -1, std::numeric_limits<int32_t>::max()})},
      {"t.arr.u8", V::array(GgufType::UINT8, {V::u8(0), V::u8(7), V::u8(255)})},
      {"t.arr.i16", V::array(GgufType::INT16, {V::i16(-5)})},
      {"t.arr.u64", V::array(GgufType::UINT64, {V::u64(~uint64_t{0}), V::u64(1)})},
      {"t.arr.i64", V::array(GgufType::INT64, {V::i64(std::numeric_limits<int64_t>::min())})},
      {"t.arr.f64", V::array(GgufType::FLOAT64, {V::f64(-1e300), V::f64(2.5)})},
      {"t.arr.bool", V::array(GgufType::BOOL, {V::boolean(true), V::boolean(false)})},
      {"t.arr.u16", V::array(GgufType::UINT16, {V::u16(1)})},
      {"t.arr.i8", V::array(GgufType::INT8, {V::i8(-1)})},
      {"t.arr.u32", V::array(GgufType::UINT32, {V::u32(4000000000u)})},
      {"t.arr.empty", V::array(GgufType::INT32, {})},
      {"t.arr.empty_str", V::str_array({})},
      {"t.arr.nested", V::array(GgufType::ARRAY, {V::i32_array({1, 2}), V::str_array({"x"}),
                                                  V::array(GgufType::ARRAY, {V::f32_array({})}),
                                                  V::array(GgufType::FLOAT64, {})})},
  };
}

struct TensorSpec {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
  size_t bytes;
};

// A small valid file: strings, arrays and four tensors, the last ending exactly at end of file
// (its size is a multiple of 32), so every proper prefix is invalid.
Bytes small_file() {
  GgufWriter w;
  w.set("general.architecture", V::str("llama"));
  w.set("general.name", V::str("tiny"));
  w.set("llama.block_count", V::u32(2));
  w.set("t.neg", V::i64(-3));
  w.set("t.flag", V::boolean(true));
  w.set("tokenizer.ggml.tokens", V::str_array({"<unk>", "a", "bc", ""}));
  w.set("tokenizer.ggml.scores", V::f32_array({0.0f, -1.0f, -2.0f, -3.0f}));
  w.set("t.nested", V::array(GgufType::ARRAY, {V::i32_array({7}), V::str_array({"q"})}));
  std::mt19937 rng(1);
  const TensorSpec specs[] = {{"a.f16", DType::F16, {8, 3}, 48},
                              {"b.q8_0", DType::Q8_0, {64, 2}, 136},
                              {"c.q4_0", DType::Q4_0, {32, 3}, 54},
                              {"d.f32", DType::F32, {8, 4}, 128}};
  for (const TensorSpec& s : specs) {
    const Bytes b = random_bytes(s.bytes, rng);
    w.add_tensor(s.name, s.type, s.ne, b.data(), b.size());
  }
  return w.to_bytes();
}

enum class Outcome { kOk, kError, kOther };

// Parses b and touches everything a caller might use; a moe::Error must name the file.
Outcome try_parse_in_place(const Bytes& b, std::string* msg) {
  try {
    GgufFile f(b.data(), b.size(), kName);
    size_t sink = 0;
    for (const auto& [key, value] : f.metadata()) sink += key.size() + value.to_display().size();
    for (const GgufTensorInfo& t : f.tensors()) {
      const Tensor view = f.tensor(t);
      const auto* p = static_cast<const uint8_t*>(view.data);
      sink += p[0] + p[t.n_bytes - 1] + view.n_bytes();
    }
    if (msg) *msg = std::to_string(sink);
    return Outcome::kOk;
  } catch (const Error& e) {
    if (msg) *msg = e.what();
    EXPECT_EQ(std::string(e.what()).rfind(std::string(kName) + ": ", 0), 0u) << e.what();
    return Outcome::kError;
  } catch (const std::exception& e) {
    if (msg) *msg = e.what();
    return Outcome::kOther;
  }
}

// b's heap block ends at b.size(), so ASan flags any read past the end.
Outcome try_parse(const Bytes& b, std::string* msg = nullptr) { return try_parse_in_place(b, msg); }

// Parses the first size bytes from a copy of exactly that size.
Outcome try_parse(const uint8_t* data, size_t size, std::string* msg = nullptr) {
  return try_parse_in_place(Bytes(data, data + size), msg);
}

std::string parse_error(const Bytes& b) {
  std::string msg;
  EXPECT_EQ(try_parse(b, &msg), Outcome::kError) << msg;
  return msg;
}

// Positions of the header's count, length, type, dimension and offset fields in a valid file.
struct Field {
  size_t offset;
  int width;
  std::string what;
};

class FieldWalker {
 public:
  FieldWalker(const Bytes& b, size_t max_elems) : b_(b), max_elems_(max_elems) {}

  std::vector<Field> walk() {
    pos_ = 8;
    const uint64_t n_tensors = field(8, "tensor count");
    const uint64_t n_kv = field(8, "kv count");
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string key = string("key length");
      value(static_cast<uint32_t>(field(4, key + " type")), key, true);
    }
    for (uint64_t i = 0; i < n_tensors; ++i) {
      const std::string name = string("tensor name length");
      const uint64_t n_dims = field(4, name + " n_dims");
      for (uint64_t j = 0; j < n_dims; ++j) field(8, name + " dim");
      field(4, name + " type");
      field(8, name + " offset");
    }
    return fields_;
  }

 private:
  uint64_t read(int width) {
    uint64_t v = 0;
    std::memcpy(&v, &b_.at(pos_ + width - 1) - (width - 1), width);
    pos_ += width;
    return v;
  }
  uint64_t field(int width, const std::string& what, bool record = true) {
    if (record) fields_.push_back({pos_, width, what});
    return read(width);
  }
  std::string string(const std::string& what, bool record = true) {
    const uint64_t n = field(8, what, record);
    std::string s(reinterpret_cast<const char*>(&b_.at(pos_)), n);
    pos_ += n;
    return s;
  }
  void value(uint32_t type, const std::string& key, bool record) {
    static const int kWidth[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      string(key + " string length", record);
    } else if (type == 9) {
      const uint32_t et = static_cast<uint32_t>(field(4, key + " elem type", record));
      const uint64_t n = field(8, key + " array count", record);
      for (uint64_t i = 0; i < n; ++i) value(et, key, record && i < max_elems_);
    } else {
      field(kWidth[type], key + " value", record && kWidth[type] >= 4);
    }
  }

  const Bytes& b_;
  size_t max_elems_;
  size_t pos_ = 0;
  std::vector<Field> fields_;
};

// Overwrites each field with hostile values; each result must parse or throw moe::Error.
// Returns how many mutations were rejected.
size_t overwrite_fields(Bytes& b, size_t max_elems) {
  const std::vector<Field> fields = FieldWalker(b, max_elems).walk();
  EXPECT_GT(fields.size(), 10u);
  size_t rejected = 0;
  for (const Field& f : fields) {
    uint64_t orig = 0;
    std::memcpy(&orig, &b[f.offset], f.width);
    const uint64_t values[] = {0,
                               1,
                               2,
                               3,
                               5,
                               13,
                               0xFFFFFFFFu,
                               ~uint64_t{0},
                               uint64_t{1} << 62,
                               1u << 31,
                               uint64_t{1} << 32,
                               b.size() + 1,
                               b.size(),
                               orig + 1,
                               orig - 1,
                               orig + 32,
                               orig * 2};
    for (const uint64_t v : values) {
      std::memcpy(&b[f.offset], &v, f.width);
      std::string msg;
      const Outcome o = try_parse(b, &msg);
      EXPECT_NE(o, Outcome::kOther) << f.what << " = " << v << ": " << msg;
      rejected += o == Outcome::kError;
    }
    std::memcpy(&b[f.offset], &orig, f.width);
  }
  EXPECT_EQ(try_parse(b), Outcome::kOk);
  return rejected;
}

// Hand-built files for cases the writer refuses to produce.
struct Builder {
  Bytes b;
  Builder& u32(uint32_t v) { return raw(&v, 4); }
  Builder& u64(uint64_t v) { return raw(&v, 8); }
  Builder& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Builder& raw(const void* p, size_t n) {
    b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return *this;
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return raw("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  }
};

// ---------------------------------------------------------------------------------------------

TEST(GgufValue, Conversions) {
  EXPECT_EQ(V::u32(7).as_int(), 7);
  EXPECT_EQ(V::i8(-3).as_int(), -3);
  EXPECT_THROW(V::u64(~uint64_t{0}).as_int(), Error);
  EXPECT_EQ(V::u64(~uint64_t{0}).as_uint(), ~uint64_t{0});
  EXPECT_THROW(V::i32(-1).as_uint(), Error);
  EXPECT_EQ(V::i16(-2).as_float(), -2.0);
  EXPECT_EQ(V::f32(0.25f).as_float(), 0.25);
  EXPECT_THROW(V::f32(1).as_int(), Error);
  EXPECT_THROW(V::str("x").as_float(), Error);
  EXPECT_THROW(V::u8(1).as_bool(), Error);
  EXPECT_THROW(V::u8(1).as_string(), Error);
  EXPECT_THROW(V::u8(1).elems(), Error);
  EXPECT_TRUE(V::u8(1).is_integer());
  EXPECT_FALSE(V::boolean(true).is_integer());
  EXPECT_TRUE(V::f64(1).is_number());
  EXPECT_EQ(V::str_array({"a", "b"}).as_string_array(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(V::i32_array({1, -2}).as_int_array(), (std::vector<int64_t>{1, -2}));
  EXPECT_EQ(V::i32_array({1, -2}).as_float_array(), (std::vector<float>{1, -2}));
  EXPECT_THROW(V::str_array({"a"}).as_int_array(), Error);
  EXPECT_THROW(V::i32_array({1}).as_string_array(), Error);
  EXPECT_THROW(V::array(GgufType::INT32, {V::u8(1)}), Error);
  EXPECT_THROW(V::array(static_cast<GgufType>(13), {}), Error);
}

TEST(GgufValue, Display) {
  EXPECT_EQ(V::str("hi \"x\"\n").to_display(), "\"hi \\\"x\\\"\\n\"");
  EXPECT_EQ(V::boolean(true).to_display(), "true");
  EXPECT_EQ(V::i64(-5).to_display(), "-5");
  EXPECT_EQ(V::u64(~uint64_t{0}).to_display(), "18446744073709551615");
  EXPECT_EQ(V::f32(9.99999975e-06f).to_display(), "1e-05");
  EXPECT_EQ(V::f64(0.5).to_display(), "0.5");
  EXPECT_EQ(V::i32_array({}).to_display(), "[]");
  EXPECT_EQ(V::i32_array({1, 2, 3}).to_display(), "[1, 2, 3]");
  EXPECT_EQ(V::i32_array({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).to_display(), "[0, 1, 2, 3, 4, 5, 6, 7, ... (10)]");
  EXPECT_EQ(V::i32_array({0, 1, 2}).to_display(2), "[0, 1, ... (3)]");
  EXPECT_EQ(V::i32_array({0, 1, 2}).to_display(0), "[... (3)]");
  EXPECT_EQ(V::str_array({"a", ""}).to_display(), "[\"a\", \"\"]");
  EXPECT_EQ(V::array(GgufType::ARRAY, {V::i32_array({1}), V::str_array({})}).to_display(), "[[1], []]");
  const std::string long_str(100, 'x');
  EXPECT_EQ(V::str(long_str).to_display(), "\"" + std::string(64, 'x') + "\"... (100 bytes)");
  EXPECT_EQ(V::str(long_str).to_display(SIZE_MAX), "\"" + long_str + "\"");
}

TEST(GgufRoundTrip, EveryValueTypeAndTensorType) {
  for (const uint32_t alignment : {32u, 64u, 1u, 4096u}) {
    SCOPED_TRACE(alignment);
    GgufWriter w;
    const auto kv = all_types_metadata();
    for (const auto& [key, value] : kv) w.set(key, value);
    if (alignment != 32) w.set_alignment(alignment);
    std::mt19937 rng(alignment);
    const TensorSpec specs[] = {{"f32.3d", DType::F32, {5, 3, 2}, 120},
                                {"f16", DType::F16, {7}, 14},
                                {"q8_0", DType::Q8_0, {96, 3}, 306},
                                {"q4_0.4d", DType::Q4_0, {64, 2, 1, 3}, 216}};
    std::vector<Bytes> data;
    for (const TensorSpec& s : specs) {
      data.push_back(random_bytes(s.bytes, rng));
      w.add_tensor(s.name, s.type, s.ne, data.back().data(), data.back().size());
    }
    const Bytes bytes = w.to_bytes();
    GgufFile f(bytes.data(), bytes.size(), "mem.gguf");
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), alignment);
    EXPECT_EQ(f.data_offset() % alignment, 0u);
    ASSERT_EQ(f.metadata().size(), kv.size() + (alignment != 32));
    for (size_t i = 0; i < kv.size(); ++i) {
      EXPECT_EQ(f.metadata()[i].first, kv[i].first);
      expect_same(f.metadata()[i].second, kv[i].second, kv[i].first);
      ASSERT_NE(f.find(kv[i].first), nullptr);
    }
    ASSERT_EQ(f.tensors().size(), std::size(specs));
    for (size_t i = 0; i < std::size(specs); ++i) {
      const GgufTensorInfo* t = f.find_tensor(specs[i].name);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t, &f.tensors()[i]);
      EXPECT_EQ(t->type, specs[i].type);
      EXPECT_EQ(t->n_dims, static_cast<int>(specs[i].ne.size()));
      for (size_t j = 0; j < 4; ++j) EXPECT_EQ(t->ne[j], j < specs[i].ne.size() ? specs[i].ne[j] : 1);
      EXPECT_EQ(t->n_bytes, specs[i].bytes);
      EXPECT_EQ(t->offset % alignment, 0u);
      EXPECT_EQ(std::memcmp(f.tensor_data(*t), data[i].data(), data[i].size()), 0);
      const Tensor view = f.tensor(*t);
      EXPECT_EQ(view.data, f.tensor_data(*t));
      EXPECT_EQ(view.n_bytes(), specs[i].bytes);
    }
    // Serialising what was read gives the same bytes.
    GgufWriter again;
    for (const auto& [key, value] : f.metadata()) again.set(key, value);
    for (const GgufTensorInfo& t : f.tensors())
      again.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), f.tensor_data(t),
                       t.n_bytes);
    EXPECT_EQ(again.to_bytes(), bytes);
  }
}

TEST(GgufRoundTrip, TypedGetters) {
  GgufWriter w;
  w.set("s", V::str("v"));
  w.set("i", V::i32(-4));
  w.set("f", V::f32(0.5f));
  w.set("b", V::boolean(true));
  const Bytes bytes = w.to_bytes();
  GgufFile f(bytes.data(), bytes.size(), "getters.gguf");
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.get_string("s", "d"), "v");
  EXPECT_EQ(f.get_string("absent", "d"), "d");
  EXPECT_EQ(f.get_int("i", 0), -4);
  EXPECT_EQ(f.get_float("i", 0), -4.0);
  EXPECT_EQ(f.get_float("f", 0), 0.5);
  EXPECT_TRUE(f.get_bool("b", false));
  EXPECT_EQ(f.find("absent"), nullptr);
  EXPECT_EQ(f.find_tensor("absent"), nullptr);
  try {
    f.get_int("s", 0);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "getters.gguf: key 's'")) << e.what();
  }
  try {
    f.get("absent");
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "getters.gguf: missing key 'absent'")) << e.what();
  }
}

TEST(GgufWriter, SetReplacesInPlaceAndValidates) {
  GgufWriter w;
  w.set("a", V::u8(1));
  w.set("b", V::u8(2));
  w.set("a", V::str("x"));
  const Bytes bytes = w.to_bytes();
  GgufFile f(bytes.data(), bytes.size(), "w.gguf");
  ASSERT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata()[0].first, "a");
  EXPECT_EQ(f.metadata()[0].second.as_string(), "x");
  EXPECT_THROW(w.set("", V::u8(0)), Error);
  EXPECT_THROW(w.set("general.alignment", V::u64(32)), Error);
  EXPECT_THROW(w.set_alignment(0), Error);
  EXPECT_THROW(w.set_alignment(48), Error);
  V deep = V::i32_array({1});
  for (int i = 0; i < 7; ++i) deep = V::array(GgufType::ARRAY, {deep});
  w.set("deep8", deep);  // 8 levels: the reader's limit
  EXPECT_THROW(w.set("deep9", V::array(GgufType::ARRAY, {deep})), Error);
  const float x[4] = {};
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, x, 12), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {}, x, 0), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {1, 1, 1, 1, 1}, x, 4), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {0}, x, 0), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {-4}, x, 16), Error);
  EXPECT_THROW(w.add_tensor("t", DType::Q8_0, {16}, x, 16), Error);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {int64_t{1} << 40, int64_t{1} << 40}, x, 16), Error);
  EXPECT_THROW(w.add_tensor("", DType::F32, {4}, x, 16), Error);
  w.add_tensor("t", DType::F32, {4}, x, 16);
  EXPECT_THROW(w.add_tensor("t", DType::F32, {4}, x, 16), Error);
  const Bytes again = w.to_bytes();
  GgufFile g(again.data(), again.size(), "w.gguf");
  EXPECT_EQ(g.tensors().size(), 1u);
}

TEST(GgufWriter, WritesAtomically) {
  const std::string dir = test::temp_dir("gguf");
  GgufWriter w;
  w.set("general.architecture", V::str("llama"));
  w.set_alignment(64);
  const float x[3] = {1, 2, 3};
  w.add_tensor("x", DType::F32, {3}, x, sizeof x);
  const std::string path = dir + "/out.gguf";
  w.write(path);
  w.write(path);  // replaces
  const auto f = GgufFile::open(path);
  EXPECT_EQ(f->name(), path);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(std::memcmp(f->tensor_data(f->tensors()[0]), x, sizeof x), 0);
  EXPECT_EQ(test::read_file(path).size(), w.to_bytes().size());
  EXPECT_THROW(w.write(dir + "/missing/out.gguf"), Error);
  size_t n_files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n_files;
  EXPECT_EQ(n_files, 1u);  // no temporaries left behind
  std::filesystem::remove_all(dir);
}

TEST(GgufReader, SpecificErrors) {
  const Bytes good = small_file();
  ASSERT_EQ(try_parse(good), Outcome::kOk);
  const GgufFile f(good.data(), good.size(), kName);
  const GgufTensorInfo& last = f.tensors().back();
  EXPECT_EQ(f.data_offset() + last.offset + last.n_bytes, good.size());

  Bytes b(good.begin(), good.end() - 1);
  EXPECT_TRUE(contains(parse_error(b), "tensor 'd.f32': data [")) << parse_error(b);
  EXPECT_TRUE(contains(parse_error(b), "past end of file (" + std::to_string(b.size())));

  EXPECT_TRUE(contains(parse_error(Bytes{'G', 'G'}), "not a GGUF file"));
  EXPECT_TRUE(contains(parse_error(Bytes(good.size(), 0)), "not a GGUF file"));
  b = good;
  b[4] = 1;
  EXPECT_TRUE(contains(parse_error(b), "v1 is not supported"));
  b[4] = 2;
  EXPECT_EQ(try_parse(b), Outcome::kOk);  // v2 has the same layout
  b[4] = 0, b[7] = 3;
  EXPECT_TRUE(contains(parse_error(b), "big-endian"));
  b = good;
  b[4] = 4;
  EXPECT_TRUE(contains(parse_error(b), "unsupported GGUF version 4"));

  // Tensor-level faults, located through the walker.
  const auto fields = FieldWalker(good, 4).walk();
  auto patch = [&](const std::string& what, uint64_t v, size_t nth = 0) {
    Bytes m = good;
    for (const Field& fl : fields)
      if (fl.what == what && nth-- == 0) {
        std::memcpy(&m[fl.offset], &v, fl.width);
        return m;
      }
    ADD_FAILURE() << "no field " << what;
    return m;
  };
  EXPECT_TRUE(
      contains(parse_error(patch("b.q8_0 type", 99)), "tensor 'b.q8_0': unknown ggml tensor type id 99"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 n_dims", 5)), "tensor 'b.q8_0': n_dims 5"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 n_dims", 0)), "n_dims 0"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 dim", 0)), "dimension 0"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 dim", ~uint64_t{0})), "is -1"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 dim", 48)), "not a multiple of q8_0's block"));
  EXPECT_TRUE(contains(parse_error(patch("b.q8_0 dim", uint64_t{1} << 62, 1)), "overflows"));
  EXPECT_TRUE(contains(parse_error(patch("c.q4_0 offset", 1)), "not a multiple of the alignment"));
  EXPECT_TRUE(contains(parse_error(patch("c.q4_0 offset", 0)), "tensors 'a.f16' and 'c.q4_0' overlap"));
  EXPECT_TRUE(contains(parse_error(patch("c.q4_0 offset", uint64_t{1} << 62)), "past end of file"));
  EXPECT_TRUE(contains(parse_error(patch("tokenizer.ggml.tokens type", 13)),
                       "key 'tokenizer.ggml.tokens': unknown value type 13"));
  EXPECT_TRUE(contains(parse_error(patch("tokenizer.ggml.tokens array count", uint64_t{1} << 62)),
                       "claims 4611686018427387904 elements"));
  EXPECT_TRUE(contains(parse_error(patch("tokenizer.ggml.tokens string length", 100000, 2)),
                       "key 'tokenizer.ggml.tokens': element 2: string at offset"));
  EXPECT_TRUE(contains(parse_error(patch("kv count", 1000)), "metadata count 1000"));
  EXPECT_TRUE(contains(parse_error(patch("tensor count", 1000)), "tensor count 1000"));
  EXPECT_TRUE(contains(parse_error(patch("key length", 0)), "empty key"));

  // Duplicates: rename the second of two equally long names to the first.
  auto rename = [&](const std::string& from, const std::string& to) {
    Bytes m = good;
    const auto it = std::search(m.begin(), m.end(), from.begin(), from.end());
    EXPECT_NE(it, m.end());
    std::copy(to.begin(), to.end(), it);
    return m;
  };
  EXPECT_TRUE(contains(parse_error(rename("t.flag", "t.neg\x01")), "control character 0x1"));
  EXPECT_TRUE(contains(parse_error(rename("d.f32", "a.f16")), "duplicate tensor 'a.f16'"));
  Builder dup;
  dup.header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2);
  EXPECT_TRUE(contains(parse_error(dup.b), "duplicate key 'k'"));
}

TEST(GgufReader, HandBuiltEdgeCases) {
  auto nested = [](int depth) {
    Builder b;
    b.header(0, 1).str("n").u32(9);
    for (int i = 1; i < depth; ++i) b.u32(9).u64(1);
    b.u32(4).u64(1).u32(7);
    return b.b;
  };
  EXPECT_EQ(try_parse(nested(8)), Outcome::kOk);
  EXPECT_TRUE(contains(parse_error(nested(9)), "nested more than 8 levels"));

  Builder align;
  align.header(0, 1).str("general.alignment").u32(10).u64(64);
  EXPECT_TRUE(contains(parse_error(align.b), "'general.alignment' has type u64, expected u32"));
  for (const uint32_t a : {0u, 48u, 0x80000001u}) {
    Builder bad;
    bad.header(0, 1).str("general.alignment").u32(4).u32(a);
    EXPECT_TRUE(contains(parse_error(bad.b), "is not a power of two")) << a;
  }
  Builder boolean;
  boolean.header(0, 1).str("b").u32(7).raw("\x02", 1);
  EXPECT_TRUE(contains(parse_error(boolean.b), "key 'b': bool at offset"));

  // A million-element array claim backed by a few bytes must fail before allocating.
  Builder huge;
  huge.header(0, 1).str("a").u32(9).u32(9).u64(uint64_t{1} << 40).u32(0);
  EXPECT_TRUE(contains(parse_error(huge.b), "claims 1099511627776 elements"));

  Builder empty;  // no keys, no tensors, no padding: still a valid (empty) file
  empty.header(0, 0);
  EXPECT_EQ(try_parse(empty.b), Outcome::kOk);
}

TEST(GgufCorruption, EveryTruncationThrows) {
  const Bytes good = small_file();
  for (size_t n = 0; n < good.size(); ++n) {
    std::string msg;
    ASSERT_EQ(try_parse(good.data(), n, &msg), Outcome::kError) << "truncated at " << n << ": " << msg;
  }
}

TEST(GgufCorruption, HostileFieldValues) {
  Bytes b = small_file();
  const size_t rejected = overwrite_fields(b, 100);
  EXPECT_GT(rejected, 100u);
}

TEST(GgufCorruption, RandomByteFlips) {
  const Bytes good = small_file();
  const GgufFile f(good.data(), good.size(), kName);
  std::mt19937 rng(12345);
  size_t n_ok = 0, n_err = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    Bytes b = good;
    const int n_flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n_flips; ++i) {
      // Mostly the header, where the structure is.
      const size_t limit = rng() % 8 ? f.data_offset() : b.size();
      const size_t pos = rng() % limit;
      b[pos] = rng() % 3 ? static_cast<uint8_t>(b[pos] ^ (1u << (rng() % 8))) : static_cast<uint8_t>(rng());
    }
    std::string msg;
    const Outcome o = try_parse(b, &msg);
    ASSERT_NE(o, Outcome::kOther) << "iteration " << iter << ": " << msg;
    (o == Outcome::kOk ? n_ok : n_err)++;
  }
  EXPECT_GT(n_err, 1000u);
  EXPECT_GT(n_ok, 10u);
}

class StoriesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string s = test::read_file(test::testdata("models/stories260K.gguf"));
    bytes_ = new Bytes(s.begin(), s.end());
  }
  static void TearDownTestSuite() {
    delete bytes_;
    bytes_ = nullptr;
  }
  static Bytes* bytes_;
};
Bytes* StoriesTest::bytes_ = nullptr;

TEST_F(StoriesTest, KnownFacts) {
  const auto f = GgufFile::open(test::testdata("models/stories260K.gguf"));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->data_offset(), 14176u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f->get_int("llama.embedding_length", 0), 64);
  EXPECT_EQ(f->get_int("llama.block_count", 0), 5);
  EXPECT_EQ(f->get_int("llama.attention.head_count_kv", 0), 4);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("llama.attention.layer_norm_rms_epsilon", 0)), 1e-5f);
  EXPECT_EQ(f->get("tokenizer.ggml.seperator_token_id").as_uint(), 0xFFFFFFFFu);
  const auto tokens = f->get("tokenizer.ggml.tokens").as_string_array();
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(f->get("tokenizer.ggml.scores").as_float_array().size(), 512u);
  EXPECT_EQ(f->get("tokenizer.ggml.token_type").as_int_array()[1], 3);
  const GgufTensorInfo* t = f->find_tensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, DType::F32);
  EXPECT_EQ(t->n_dims, 2);
  EXPECT_EQ(t->ne[0], 64);
  EXPECT_EQ(t->ne[1], 512);
  EXPECT_EQ(t->offset, 0u);
  const Tensor view = f->tensor(*t);
  EXPECT_EQ(view.nb[1], 256u);
  EXPECT_FLOAT_EQ(static_cast<const float*>(view.data)[0], -0.29474878f);
  EXPECT_FLOAT_EQ(static_cast<const float*>(view.data)[1], 0.5618956f);
  const GgufTensorInfo* norm = f->find_tensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->offset, 131072u);
  EXPECT_FLOAT_EQ(reinterpret_cast<const float*>(f->tensor_data(*norm))[0], 2.4583089f);
}

TEST_F(StoriesTest, RewriteIsByteIdentical) {
  const GgufFile f(bytes_->data(), bytes_->size(), "stories260K.gguf");
  GgufWriter w;
  for (const auto& [key, value] : f.metadata()) w.set(key, value);
  for (const GgufTensorInfo& t : f.tensors())
    w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), f.tensor_data(t), t.n_bytes);
  EXPECT_TRUE(w.to_bytes() == *bytes_);
}

TEST_F(StoriesTest, Truncations) {
  const Bytes& good = *bytes_;
  std::vector<size_t> cuts;
  for (size_t n = 0; n < 4096; ++n) cuts.push_back(n);
  for (size_t n = 4096; n < 14400; n += 7) cuts.push_back(n);
  for (size_t n = 14400; n < good.size(); n += 9973) cuts.push_back(n);
  cuts.push_back(good.size() - 1);
  for (const size_t n : cuts) {
    std::string msg;
    ASSERT_EQ(try_parse(good.data(), n, &msg), Outcome::kError) << "truncated at " << n << ": " << msg;
  }
}

TEST_F(StoriesTest, HostileFieldValuesAndFlips) {
  Bytes b = *bytes_;
  EXPECT_GT(overwrite_fields(b, 3), 500u);
  const size_t header = 14176;
  std::mt19937 rng(777);
  for (int iter = 0; iter < 300; ++iter) {
    const size_t pos = rng() % header;
    const uint8_t orig = b[pos];
    b[pos] = static_cast<uint8_t>(rng());
    std::string msg;
    ASSERT_NE(try_parse(b, &msg), Outcome::kOther) << "byte " << pos << ": " << msg;
    b[pos] = orig;
  }
}

}  // namespace
}  // namespace moe
