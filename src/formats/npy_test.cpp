#include "formats/npy.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "testdata.h"

namespace moe {
namespace {

TEST(NpyTest, RoundTripAndHeaderLayout) {
  const std::string dir = test::temp_dir("npy");
  std::vector<float> v(6);
  for (int i = 0; i < 6; ++i) v[i] = 0.5f * static_cast<float>(i) - 1.0f;
  write_npy_f32(dir + "/a.npy", {2, 3}, v.data());
  const std::string bytes = test::read_file(dir + "/a.npy");
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u);  // numpy aligns the data to 64 bytes
  EXPECT_NE(bytes.find("'shape': (2, 3)"), std::string::npos);
  const NpyArray a = read_npy_f32(dir + "/a.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, v);
  write_npy_f32(dir + "/b.npy", {6}, v.data());
  EXPECT_NE(test::read_file(dir + "/b.npy").find("'shape': (6,)"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(NpyTest, RejectsMalformedFiles) {
  const std::string dir = test::temp_dir("npy");
  std::vector<float> v(4, 1.0f);
  write_npy_f32(dir + "/a.npy", {4}, v.data());
  const std::string good = test::read_file(dir + "/a.npy");
  for (size_t cut = 0; cut < good.size(); cut += 7) {
    FILE* f = std::fopen((dir + "/t.npy").c_str(), "wb");
    std::fwrite(good.data(), 1, cut, f);
    std::fclose(f);
    EXPECT_THROW(read_npy_f32(dir + "/t.npy"), Error) << cut;
  }
  EXPECT_THROW(read_npy_f32(dir + "/missing.npy"), Error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace moe
