#include "formats/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/file_util.h"

namespace moe {

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    count *= shape[i];
  }
  if (shape.size() == 1) dims += ",";  // numpy writes "(n,)" for 1-D and "(n, m)" otherwise
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(count) * sizeof(float));
  write_file_atomic(path, out.data(), out.size());
}

NpyArray read_npy_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  MOE_CHECK(f.good(), path, ": cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  MOE_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, path, ": not a .npy file");
  const uint8_t major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, start;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
    start = 10;
  } else {
    MOE_CHECK(bytes.size() >= 12, path, ": truncated header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    start = 12;
  }
  MOE_CHECK(start + header_len <= bytes.size(), path, ": truncated header");
  const std::string header = bytes.substr(start, header_len);
  MOE_CHECK(header.find("'<f4'") != std::string::npos, path, ": dtype is not little-endian float32");
  MOE_CHECK(header.find("'fortran_order': False") != std::string::npos, path, ": Fortran order is not supported");
  const size_t open = header.find('(', header.find("'shape'"));
  const size_t close = header.find(')', open);
  MOE_CHECK(open != std::string::npos && close != std::string::npos, path, ": no shape in header");
  NpyArray a;
  int64_t count = 1;
  const std::string dims = header.substr(open + 1, close - open - 1);
  size_t i = 0;
  while (i < dims.size()) {
    while (i < dims.size() && (dims[i] == ' ' || dims[i] == ',')) ++i;
    if (i >= dims.size()) break;
    size_t used = 0;
    const long long d = std::stoll(dims.substr(i), &used);
    MOE_CHECK(d >= 0 && d < (1ll << 40), path, ": bad dimension ", d);
    a.shape.push_back(d);
    count *= d;
    MOE_CHECK(count < (1ll << 40), path, ": array too large");
    i += used;
  }
  const size_t data_start = start + header_len;
  MOE_CHECK(bytes.size() - data_start == static_cast<size_t>(count) * 4, path, ": expected ", count * 4,
            " bytes of data, found ", bytes.size() - data_start);
  a.data.resize(static_cast<size_t>(count));
  std::memcpy(a.data.data(), bytes.data() + data_start, a.data.size() * 4);
  return a;
}

}  // namespace moe
