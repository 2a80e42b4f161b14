// Read-only memory map of a whole file. Tensor views into a model point here, so the MappedFile
// must stay live while any view into it is used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

class MappedFile {
 public:
  // Throws moe::Error naming the path when the file cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moe
