#include "core/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace moe {

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  tmp_path_ = path + ".tmp-XXXXXX";
  fd_ = ::mkstemp(tmp_path_.data());
  MOE_CHECK(fd_ >= 0, path, ": cannot create a temporary file beside it: ", std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, size);
    if (n < 0 && errno == EINTR) continue;
    MOE_CHECK(n > 0, path_, ": write failed: ", std::strerror(errno));
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  (void)::fchmod(fd_, 0644);  // mkstemp creates 0600; model files are meant to be shared
  MOE_CHECK(::fsync(fd_) == 0, path_, ": fsync failed: ", std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  MOE_CHECK(rc == 0, path_, ": close failed: ", std::strerror(errno));
  MOE_CHECK(::rename(tmp_path_.c_str(), path_.c_str()) == 0, path_, ": rename failed: ", std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFile f(path);
  f.write(data, size);
  f.commit();
}

}  // namespace moe
