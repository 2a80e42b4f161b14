#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "testdata.h"

namespace moe {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

// A file from a raw header and data section.
Bytes raw_file(const std::string& header, size_t data_bytes) {
  Bytes b;
  b.reserve(8 + header.size() + data_bytes);
  for (int i = 0; i < 8; ++i)
    b.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0x5a);
  return b;
}

// The moe::Error message parsing bytes gives ("" when it parses).
std::string parse_error(const Bytes& b, const std::string& name = "bad.safetensors") {
  try {
    SafetensorsFile::from_bytes(b.data(), b.size(), name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Bytes sample_file() {
  SafetensorsWriter w;
  w.add_f32("a.weight", {2, 3}, {1, 2, 3, 4, 5, 6});
  const uint16_t bf[4] = {0x3f80, 0x4000, 0xbf80, 0x0000};  // 1, 2, -1, 0
  w.add("b.weight", StDtype::kBF16, {4}, bf, sizeof bf);
  const uint8_t f8[2] = {0x38, 0x40};
  w.add("c.weight", StDtype::kF8E4M3, {1, 2}, f8, sizeof f8);
  const int64_t ids[3] = {7, -1, 42};
  w.add("position_ids", StDtype::kI64, {3}, ids, sizeof ids);
  w.add("empty", StDtype::kF16, {0, 5}, nullptr, 0);
  w.set_metadata("format", "pt");
  return w.to_bytes();
}

TEST(SafetensorsFile, WriterRoundTrip) {
  const Bytes b = sample_file();
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | b[i];
  EXPECT_EQ(n % 8, 0u) << "header padded to 8 bytes";
  const auto f = SafetensorsFile::from_bytes(b.data(), b.size(), "mem");
  ASSERT_EQ(f->tensors().size(), 5u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const SafetensorsTensor* a = f->find("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, StDtype::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->n_elements(), 6);
  ASSERT_EQ(a->n_bytes, 24u);
  float av[6];
  std::memcpy(av, a->data, 24);
  EXPECT_EQ(av[5], 6.0f);
  const SafetensorsTensor* bt = f->find("b.weight");
  ASSERT_NE(bt, nullptr);
  EXPECT_EQ(bt->dtype, StDtype::kBF16);
  EXPECT_EQ(st_dtype_to_dtype(bt->dtype), DType::BF16);
  EXPECT_EQ(f->find("c.weight")->dtype, StDtype::kF8E4M3);
  EXPECT_FALSE(st_dtype_to_dtype(StDtype::kF8E4M3).has_value());
  EXPECT_EQ(f->find("position_ids")->dtype, StDtype::kI64);  // listed, not usable as a weight
  EXPECT_EQ(f->find("empty")->n_bytes, 0u);
  EXPECT_EQ(f->find("missing"), nullptr);
  // Data order is the order written.
  EXPECT_EQ(f->tensors()[0].name, "a.weight");
}

TEST(SafetensorsFile, WriteIsAtomicAndReadable) {
  const std::string dir = test::temp_dir("st-write");
  SafetensorsWriter w;
  w.add_f32("x", {3}, {1.5f, -2.0f, 0.25f});
  w.write(dir + "/model.safetensors");
  const auto f = SafetensorsFile::open(dir + "/model.safetensors");
  ASSERT_NE(f->find("x"), nullptr);
  EXPECT_EQ(f->path(), dir + "/model.safetensors");
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u) << "no temporary left behind";
  fs::remove_all(dir);
}

TEST(SafetensorsFile, WriterRejectsWrongSizes) {
  SafetensorsWriter w;
  const float x[3] = {};
  EXPECT_THROW(w.add("x", StDtype::kF32, {2, 2}, x, sizeof x), Error);
  EXPECT_THROW(w.add("__metadata__", StDtype::kF32, {3}, x, sizeof x), Error);
  w.add("x", StDtype::kF32, {3}, x, sizeof x);
  EXPECT_THROW(w.add("x", StDtype::kF32, {3}, x, sizeof x), Error);
}

TEST(SafetensorsFile, HostileHeadersGiveClearErrors) {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_EQ(parse_error(raw_file(ok, 8)), "");

  struct Case {
    Bytes bytes;
    std::vector<std::string> expect;  // substrings of the message
  };
  Bytes huge_len(16, 0);
  huge_len[5] = 0x10;  // 2^40
  Bytes past_end = raw_file(ok, 8);
  past_end[0] = 200;  // header length 200 in a file of ~70 bytes
  std::string deep = R"({"__metadata__":)";
  for (int i = 0; i < 200; ++i) deep += "[";
  const std::vector<Case> cases = {
      {Bytes{1, 2, 3}, {"bad.safetensors", "shorter than"}},
      {huge_len, {"bad.safetensors", "exceeds the limit"}},
      {past_end, {"bad.safetensors", "past the end"}},
      {raw_file("{not json", 0), {"bad.safetensors", "not valid JSON"}},
      {raw_file("[1,2]", 0), {"not a JSON object"}},
      {raw_file(deep, 0), {"nested deeper"}},
      {raw_file(R"({"t":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", 8),
       {"'t'", "unknown dtype 'F7'"}},
      {raw_file(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8), {"'t'", "dtype"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), {"'t'", "non-negative"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8), {"'t'", "non-negative"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", 8),
       {"'t'", "too large"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
                8),
       {"'t'", "too large"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), {"'t'", "begin after end"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8), {"'t'", "[begin, end]"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 8),
       {"'t'", "past the data section"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]}})", 8),
       {"'t'", "non-negative integers"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), {"'t'", "takes 12"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                12),
       {"'t'", "'u'", "overlap"}},
      {raw_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":1}})", 8),
       {"__metadata__", "'k'"}},
      {raw_file(R"({"t":[1]})", 0), {"'t'", "not an object"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string msg = parse_error(cases[i].bytes);
    ASSERT_NE(msg, "") << "case " << i << " parsed";
    for (const std::string& sub : cases[i].expect)
      EXPECT_TRUE(contains(msg, sub)) << "case " << i << ": " << msg;
  }
}

TEST(SafetensorsFile, RandomCorruptionNeverCrashes) {
  const Bytes good = sample_file();
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 3000; ++iter) {
    Bytes b = good;
    const int mode = iter % 3;
    if (mode == 0) {
      b.resize(rng() % (b.size() + 1));
    } else {
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < flips; ++k) {
        // Mostly the header (where the structure is), sometimes the length.
        const size_t pos = rng() % 4 == 0 ? rng() % 8 : 8 + rng() % (b.size() - 8);
        b[pos] = mode == 1 ? static_cast<uint8_t>(rng()) : static_cast<uint8_t>(b[pos] ^ (1u << (rng() % 8)));
      }
    }
    try {
      const auto f = SafetensorsFile::from_bytes(b.data(), b.size(), "fuzz");
      for (const SafetensorsTensor& t : f->tensors()) {
        // Every tensor that parsed lies inside the buffer.
        if (t.n_bytes == 0) continue;
        ASSERT_GE(t.data, b.data());
        ASSERT_LE(t.data + t.n_bytes, b.data() + b.size());
      }
    } catch (const Error&) {
    }
  }
}

TEST(SafetensorsFile, OpenNamesMissingFile) {
  try {
    SafetensorsFile::open("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/x.safetensors"));
  }
}

// ---- directories ----

void write_shard(const std::string& path, const std::vector<std::string>& names) {
  SafetensorsWriter w;
  for (const std::string& n : names) w.add_f32(n, {1}, {1.0f});
  w.write(path);
}

std::string dir_error(const std::string& dir) {
  try {
    open_safetensors_dir(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafetensorsDir, IndexedShards) {
  const std::string dir = test::temp_dir("st-dir");
  write_shard(dir + "/model-00001-of-00002.safetensors", {"a", "b"});
  write_shard(dir + "/model-00002-of-00002.safetensors", {"c"});
  const std::string index =
      R"({"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
      R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})";
  std::ofstream(dir + "/model.safetensors.index.json") << index;
  const auto d = open_safetensors_dir(dir);
  EXPECT_EQ(d->files().size(), 2u);
  ASSERT_EQ(d->tensors().size(), 3u);
  ASSERT_NE(d->find("c"), nullptr);
  EXPECT_TRUE(contains(d->find("c")->file, "00002"));
  EXPECT_EQ(d->find("zz"), nullptr);

  // A tensor the index names but its shard lacks.
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
         R"("c":"model-00002-of-00002.safetensors","d":"model-00002-of-00002.safetensors"}})";
  std::string msg = dir_error(dir);
  EXPECT_TRUE(contains(msg, "'d'") && contains(msg, "00002") && contains(msg, dir)) << msg;

  // A shard tensor the index does not list.
  std::ofstream(dir + "/model.safetensors.index.json")
      << R"({"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})";
  msg = dir_error(dir);
  EXPECT_TRUE(contains(msg, "'b'") && contains(msg, "not listed")) << msg;

  // Shard names that leave the directory, or do not exist.
  for (const std::string bad :
       {"../model-00001-of-00002.safetensors", "/etc/passwd", "sub/../../x.safetensors", ""}) {
    std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"a":")" + bad + R"("}})";
    msg = dir_error(dir);
    EXPECT_TRUE(contains(msg, "model.safetensors.index.json")) << bad << ": " << msg;
  }
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":{"a":"gone.safetensors"}})";
  msg = dir_error(dir);
  EXPECT_TRUE(contains(msg, "gone.safetensors") && contains(msg, "missing")) << msg;
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map":[1]})";
  EXPECT_TRUE(contains(dir_error(dir), "weight_map"));
  std::ofstream(dir + "/model.safetensors.index.json") << "{oops";
  EXPECT_TRUE(contains(dir_error(dir), "not valid JSON"));
  fs::remove_all(dir);
}

TEST(SafetensorsDir, SingleFileAndGlob) {
  const std::string dir = test::temp_dir("st-glob");
  EXPECT_TRUE(contains(dir_error(dir), "no model.safetensors"));
  write_shard(dir + "/b.safetensors", {"x"});
  write_shard(dir + "/a.safetensors", {"y"});
  auto d = open_safetensors_dir(dir);
  ASSERT_EQ(d->tensors().size(), 2u);
  EXPECT_EQ(d->tensors()[0]->name, "y");  // files in name order
  write_shard(dir + "/c.safetensors", {"x"});
  const std::string msg = dir_error(dir);
  EXPECT_TRUE(contains(msg, "'x'") && contains(msg, "both")) << msg;
  write_shard(dir + "/model.safetensors", {"only"});  // model.safetensors wins over the glob
  d = open_safetensors_dir(dir);
  ASSERT_EQ(d->tensors().size(), 1u);
  EXPECT_EQ(d->tensors()[0]->name, "only");
  EXPECT_TRUE(contains(dir_error(dir + "/nope"), "not a directory"));
  fs::remove_all(dir);
}

// ---- FP8 ----

TEST(SafetensorsFp8, E4m3HandValues) {
  EXPECT_EQ(fp8_e4m3_to_fp32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(fp8_e4m3_to_fp32(0x80)));
  EXPECT_EQ(fp8_e4m3_to_fp32(0x01), 0.001953125f);  // smallest subnormal: 1/8 * 2^-6 = 2^-9
  EXPECT_EQ(fp8_e4m3_to_fp32(0x07), 0.013671875f);  // 7/8 * 2^-6
  EXPECT_EQ(fp8_e4m3_to_fp32(0x08), 0.015625f);     // smallest normal: 2^-6
  EXPECT_EQ(fp8_e4m3_to_fp32(0x38), 1.0f);          // exponent 7 = bias
  EXPECT_EQ(fp8_e4m3_to_fp32(0x3c), 1.5f);
  EXPECT_EQ(fp8_e4m3_to_fp32(0x40), 2.0f);
  EXPECT_EQ(fp8_e4m3_to_fp32(0xc0), -2.0f);
  EXPECT_EQ(fp8_e4m3_to_fp32(0x62), 40.0f);   // 1.25 * 2^5
  EXPECT_EQ(fp8_e4m3_to_fp32(0x77), 240.0f);  // 1.875 * 2^7: finite (e4m3fn has no inf)
  EXPECT_EQ(fp8_e4m3_to_fp32(0x78), 256.0f);  // exponent 15 holds normal numbers
  EXPECT_EQ(fp8_e4m3_to_fp32(0x7e), 448.0f);  // largest finite
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_fp32(0x7f)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_to_fp32(0xff)));
  int nans = 0;
  for (int i = 0; i < 256; ++i) {
    const float v = fp8_e4m3_to_fp32(static_cast<uint8_t>(i));
    nans += std::isnan(v);
    EXPECT_FALSE(std::isinf(v));
  }
  EXPECT_EQ(nans, 2);
}

TEST(SafetensorsFp8, EncodeRoundTripsAndRounds) {
  for (int i = 0; i < 256; ++i) {
    if ((i & 0x7f) == 0x7f) continue;
    const float v = fp8_e4m3_to_fp32(static_cast<uint8_t>(i));
    if (v == 0.0f) continue;  // +-0 both fine
    EXPECT_EQ(fp32_to_fp8_e4m3(v), i) << i;
  }
  EXPECT_EQ(fp32_to_fp8_e4m3(1.0625f), 0x38);  // tie between 1.0 (even) and 1.125
  EXPECT_EQ(fp32_to_fp8_e4m3(1.1875f), 0x3a);  // tie between 1.125 and 1.25 (even)
  EXPECT_EQ(fp32_to_fp8_e4m3(1e6f), 0x7e);     // saturates
  EXPECT_EQ(fp32_to_fp8_e4m3(-1e6f), 0xfe);
  EXPECT_EQ(fp32_to_fp8_e4m3(1e-9f), 0x00);
  EXPECT_EQ(fp32_to_fp8_e4m3(NAN), 0x7f);
}

TEST(SafetensorsFp8, BlockDequantizationHandComputed) {
  // A 3x5 weight in blocks of 2x2: scale_inv is [2, 3]; the last block row and column are partial.
  const uint8_t q[15] = {
      0x38, 0x40, 0x3c, 0xb8, 0x00,  // 1, 2, 1.5, -1, 0
      0x40, 0x38, 0x38, 0x38, 0x40,  // 2, 1, 1, 1, 2
      0x3c, 0xc0, 0x01, 0x7e, 0x38,  // 1.5, -2, 2^-9, 448, 1
  };
  const float s[6] = {0.5f,  2.0f,  4.0f,    // rows 0-1
                      10.0f, 0.25f, -1.0f};  // row 2
  const float want[15] = {
      0.5f,  1.0f,   3.0f,           -2.0f,  0.0f,  //
      1.0f,  0.5f,   2.0f,           2.0f,   8.0f,  //
      15.0f, -20.0f, 0.00048828125f, 112.0f, -1.0f,
  };
  float out[15];
  dequantize_fp8_blocks(q, 3, 5, s, 2, 2, out);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(out[i], want[i]) << i;
  uint16_t bf[15];
  dequantize_fp8_blocks_bf16(q, 3, 5, s, 2, 2, bf);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(bf16_to_fp32(bf[i]), want[i]) << i;  // all exact in bf16

  // DeepSeek's 128x128 blocks: element (r, c) uses scale (r / 128, c / 128).
  const int64_t rows = 130, cols = 260;
  std::vector<uint8_t> w(rows * cols, 0x38);         // all 1.0
  const std::vector<float> sc = {1, 2, 3, 4, 5, 6};  // [2, 3]
  std::vector<float> o(rows * cols);
  dequantize_fp8_blocks(w.data(), rows, cols, sc.data(), 128, 128, o.data());
  EXPECT_EQ(o[0], 1.0f);
  EXPECT_EQ(o[127 * cols + 127], 1.0f);
  EXPECT_EQ(o[127 * cols + 128], 2.0f);
  EXPECT_EQ(o[0 * cols + 259], 3.0f);
  EXPECT_EQ(o[128 * cols + 0], 4.0f);
  EXPECT_EQ(o[129 * cols + 200], 5.0f);
  EXPECT_EQ(o[129 * cols + 259], 6.0f);
}

}  // namespace
}  // namespace moe
