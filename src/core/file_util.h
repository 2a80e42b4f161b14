// Writing files so that a crash or a full disk never leaves a half-written file at the target.
#pragma once

#include <cstddef>
#include <string>

namespace moe {

// Writes size bytes to path via a temporary file in the same directory, fsync and rename.
// On failure the temporary is removed, the old file (if any) is untouched, and moe::Error names
// the path and the reason.
void write_file_atomic(const std::string& path, const void* data, size_t size);

// The same for content produced piecewise: write(fd) is called with an open file descriptor.
class AtomicFile {
 public:
  explicit AtomicFile(const std::string& path);
  ~AtomicFile();  // removes the temporary unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void commit();  // fsync, close, rename over path

 private:
  std::string path_;
  std::string tmp_path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace moe
