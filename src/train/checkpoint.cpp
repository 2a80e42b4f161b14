#include "train/checkpoint.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "train/tb_events.h"

namespace moe::train {

static_assert(std::endian::native == std::endian::little, "checkpoints are written in host order");

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'M', 'O', 'E', 'C', 'K', 'P', 'T', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint8_t kKindF32 = 0, kKindText = 1;
// magic + version + section count, and the smallest possible section (empty name and payload).
constexpr uint64_t kHeaderBytes = 8 + 4 + 8;
constexpr uint64_t kMinSectionBytes = 4 + 1 + 8;
// Names are keys like "param/blk.0.attn_q.weight"; anything longer is a malformed file.
constexpr uint32_t kMaxNameBytes = 1 << 16;
constexpr const char* kTempTag = ".tmp.";

std::string errno_text() { return std::strerror(errno); }

// Owns a file descriptor.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Buffered writer over a file descriptor that keeps the running CRC-32C of everything written.
class CkptWriter {
 public:
  CkptWriter(int fd, const std::string& path) : fd_(fd), path_(path) {}
  void put(const void* data, size_t n) {
    crc_ = crc32c_extend(crc_, data, n);
    if (buf_.size() + n > kBuffer) flush();
    if (n >= kBuffer) {
      write_all(data, n);
    } else {
      buf_.append(static_cast<const char*>(data), n);
    }
  }
  template <class T>
  void put_pod(T v) {
    put(&v, sizeof v);
  }
  void flush() {
    write_all(buf_.data(), buf_.size());
    buf_.clear();
  }
  uint32_t crc() const { return crc_; }

 private:
  static constexpr size_t kBuffer = 1 << 20;
  void write_all(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, std::min<size_t>(n, size_t{1} << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("cannot write checkpoint ", path_, ": ", w < 0 ? errno_text() : "short write");
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  int fd_;
  const std::string& path_;
  std::string buf_;
  uint32_t crc_ = 0;
};

void pread_all(int fd, void* dst, size_t n, uint64_t offset, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, std::min<size_t>(n, size_t{1} << 30), static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail("cannot read checkpoint ", path, ": ", errno_text());
    if (r == 0) fail("checkpoint ", path, " is truncated (it shrank while being read)");
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// Sequential reader of the region before the trailing checksum: every read is checked against what
// is left of it first, so no length field can make us read past the end or allocate more than the file.
class CkptReader {
 public:
  CkptReader(int fd, const std::string& path, uint64_t body_size) : fd_(fd), path_(path), left_(body_size) {}
  void read(void* dst, uint64_t n, const std::string& what) {
    need(n, what);
    pread_all(fd_, dst, static_cast<size_t>(n), pos_, path_);
    pos_ += n;
    left_ -= n;
  }
  template <class T>
  T read_pod(const std::string& what) {
    T v;
    read(&v, sizeof v, what);
    return v;
  }
  void need(uint64_t n, const std::string& what) const {
    if (n > left_)
      fail("checkpoint ", path_, " is truncated or malformed: ", what, " needs ", n, " bytes at offset ",
           pos_, ", only ", left_, " remain before the checksum");
  }
  uint64_t left() const { return left_; }
  uint64_t pos() const { return pos_; }

 private:
  int fd_;
  const std::string& path_;
  uint64_t left_;
  uint64_t pos_ = 0;
};

// "step_<at least 8 digits>.ckpt" exactly as checkpoint_path spells it; -1 for any other name.
int64_t parse_checkpoint_name(const std::string& name) {
  const std::string prefix = "step_", suffix = ".ckpt";
  if (name.size() < prefix.size() + 8 + suffix.size() || name.size() > prefix.size() + 18 + suffix.size())
    return -1;
  if (name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return -1;
  const int64_t step = std::stoll(digits);
  // Only the canonical spelling ("step_000000001.ckpt" is not step 1's file).
  return fs::path(checkpoint_path("", step)).filename().string() == name ? step : -1;
}

// Temp files are ".<final name>.tmp.<pid>.<n>": hidden, and never matching parse_checkpoint_name.
std::string temp_path_for(const fs::path& path) {
  static std::atomic<uint64_t> counter{0};
  const std::string name = "." + path.filename().string() + kTempTag + std::to_string(::getpid()) + "." +
                           std::to_string(counter.fetch_add(1));
  return (path.parent_path() / name).string();
}

void fsync_dir(const fs::path& dir, const std::string& path) {
  Fd d;
  d.fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd < 0) fail("cannot open the directory of checkpoint ", path, " to sync it: ", errno_text());
  if (::fsync(d.fd) != 0 && errno != EINVAL)
    fail("cannot sync the directory of checkpoint ", path, ": ", errno_text());
}

void write_body(CkptWriter& w, const Checkpoint& ckpt, const std::string& path) {
  w.put(kMagic, sizeof kMagic);
  w.put_pod<uint32_t>(kVersion);
  w.put_pod<uint64_t>(ckpt.arrays.size() + ckpt.texts.size());
  auto section = [&](const std::string& name, uint8_t kind, const void* data, uint64_t bytes) {
    MOE_CHECK(name.size() <= kMaxNameBytes, "checkpoint ", path, ": section name longer than ", kMaxNameBytes,
              " bytes");
    w.put_pod<uint32_t>(static_cast<uint32_t>(name.size()));
    w.put(name.data(), name.size());
    w.put_pod<uint8_t>(kind);
    w.put_pod<uint64_t>(bytes);
    w.put(data, static_cast<size_t>(bytes));
  };
  for (const auto& [name, values] : ckpt.arrays)
    section(name, kKindF32, values.data(), values.size() * sizeof(float));
  for (const auto& [name, text] : ckpt.texts) section(name, kKindText, text.data(), text.size());
  const uint32_t crc = w.crc();
  w.put_pod<uint32_t>(crc);
  w.flush();
}

}  // namespace

void save_checkpoint(const Checkpoint& ckpt, const std::string& path) {
  MOE_CHECK(!path.empty(), "checkpoint path must not be empty");
  const fs::path target(path);
  const std::string tmp = temp_path_for(target);
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (f.fd < 0) fail("cannot create checkpoint ", path, " (temp file ", tmp, "): ", errno_text());
  try {
    CkptWriter w(f.fd, path);
    write_body(w, ckpt, path);
    // The data must be on disk before the rename makes it visible under the final name; otherwise a
    // power loss could leave the new name pointing at unwritten blocks.
    if (::fsync(f.fd) != 0) fail("cannot sync checkpoint ", path, ": ", errno_text());
    const int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) fail("cannot close checkpoint ", path, ": ", errno_text());
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      fail("cannot rename ", tmp, " to checkpoint ", path, ": ", errno_text());
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(target.parent_path(), path);
}

Checkpoint load_checkpoint(const std::string& path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail("cannot open checkpoint ", path, ": ", errno_text());
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail("cannot stat checkpoint ", path, ": ", errno_text());
  MOE_CHECK(S_ISREG(st.st_mode), "checkpoint ", path, " is not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  MOE_CHECK(size >= kHeaderBytes + 4, "checkpoint ", path, " is truncated: ", size,
            " bytes, shorter than the smallest checkpoint (", kHeaderBytes + 4, ")");

  char magic[8];
  pread_all(f.fd, magic, sizeof magic, 0, path);
  MOE_CHECK(std::memcmp(magic, kMagic, sizeof kMagic) == 0, "checkpoint ", path,
            " has a bad magic (not a MOECKPT1 file)");

  // Pass 1: the checksum over everything before the last 4 bytes. Checking it first means any damage,
  // wherever it falls, is reported as what it is rather than as whatever field it happened to hit.
  const uint64_t body = size - 4;
  uint32_t stored = 0;
  pread_all(f.fd, &stored, 4, body, path);
  {
    std::vector<char> buf(size_t{1} << 20);
    uint32_t crc = 0;
    for (uint64_t off = 0; off < body;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), body - off));
      pread_all(f.fd, buf.data(), n, off, path);
      crc = crc32c_extend(crc, buf.data(), n);
      off += n;
    }
    if (crc != stored) {
      char msg[96];
      std::snprintf(msg, sizeof msg, "stored %08x, computed %08x", stored, crc);
      fail("checkpoint ", path, " is corrupt: checksum mismatch (", msg, "; truncated or damaged file)");
    }
  }

  // Pass 2: the structure, every length bounded by what is left of the file.
  CkptReader r(f.fd, path, body);
  r.read(magic, sizeof magic, "magic");
  const uint32_t version = r.read_pod<uint32_t>("version");
  MOE_CHECK(version == kVersion, "checkpoint ", path, " has unsupported version ", version, " (expected ",
            kVersion, ")");
  const uint64_t count = r.read_pod<uint64_t>("section count");
  MOE_CHECK(count <= r.left() / kMinSectionBytes, "checkpoint ", path, " is malformed: ", count,
            " sections cannot fit in ", r.left(), " bytes");
  Checkpoint out;
  for (uint64_t s = 0; s < count; ++s) {
    const std::string where = "section " + std::to_string(s);
    const uint32_t name_len = r.read_pod<uint32_t>(where + " name length");
    MOE_CHECK(name_len <= kMaxNameBytes, "checkpoint ", path, " is malformed: ", where,
              " has an oversized name (", name_len, " bytes)");
    std::string name(name_len, '\0');
    r.read(name.data(), name_len, where + " name");
    const std::string what = "section '" + name + "'";
    const uint8_t kind = r.read_pod<uint8_t>(what + " kind");
    MOE_CHECK(kind == kKindF32 || kind == kKindText, "checkpoint ", path, " is malformed: ", what,
              " has unknown kind ", int(kind));
    const uint64_t bytes = r.read_pod<uint64_t>(what + " size");
    MOE_CHECK(bytes <= r.left(), "checkpoint ", path, " is malformed: ", what, " is oversized (", bytes,
              " bytes, only ", r.left(), " left in the file)");
    if (kind == kKindF32) {
      MOE_CHECK(bytes % sizeof(float) == 0, "checkpoint ", path, " is malformed: f32 ", what, " has ", bytes,
                " bytes, not a multiple of 4");
      MOE_CHECK(!out.arrays.count(name), "checkpoint ", path, " is malformed: duplicate array ", what);
      std::vector<float>& v = out.arrays[name];
      v.resize(static_cast<size_t>(bytes / sizeof(float)));
      r.read(v.data(), bytes, what);
    } else {
      MOE_CHECK(!out.texts.count(name), "checkpoint ", path, " is malformed: duplicate text ", what);
      std::string& t = out.texts[name];
      t.resize(static_cast<size_t>(bytes));
      r.read(t.data(), bytes, what);
    }
  }
  MOE_CHECK(r.left() == 0, "checkpoint ", path, " is malformed: ", r.left(),
            " unexpected bytes after the last section");
  return out;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  MOE_CHECK(step >= 0, "checkpoint step must be >= 0, not ", step);
  char name[48];
  std::snprintf(name, sizeof name, "step_%08lld.ckpt", static_cast<long long>(step));
  return dir.empty() ? std::string(name) : (fs::path(dir) / name).string();
}

std::vector<int64_t> list_checkpoints(const std::string& dir) {
  std::vector<int64_t> steps;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return steps;  // no directory yet: no checkpoints
  for (const fs::directory_entry& e : it) {
    std::error_code ec2;
    if (!e.is_regular_file(ec2)) continue;
    const int64_t step = parse_checkpoint_name(e.path().filename().string());
    if (step >= 0) steps.push_back(step);
  }
  std::sort(steps.begin(), steps.end());
  return steps;
}

void prune_checkpoints(const std::string& dir, int keep) {
  if (keep > 0) {
    const std::vector<int64_t> steps = list_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < steps.size(); ++i) {
      const std::string p = checkpoint_path(dir, steps[i]);
      if (::unlink(p.c_str()) != 0 && errno != ENOENT)
        fail("cannot delete checkpoint ", p, ": ", errno_text());
    }
  }
  // Temp files left by writers that died mid-save (kill -9): ".step_*.ckpt.tmp.<pid>.<n>" whose pid no
  // longer exists on this host. A live writer's temp file is left alone.
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return;
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    const size_t tag = name.rfind(kTempTag);
    if (name.empty() || name[0] != '.' || tag == std::string::npos ||
        parse_checkpoint_name(name.substr(1, tag - 1)) < 0)
      continue;
    const std::string rest = name.substr(tag + std::strlen(kTempTag));
    const size_t dot = rest.find('.');
    const std::string pid_text = rest.substr(0, dot);
    if (pid_text.empty() || pid_text.size() > 9 ||
        !std::all_of(pid_text.begin(), pid_text.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      continue;
    const pid_t pid = static_cast<pid_t>(std::stol(pid_text));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(e.path().c_str());
  }
}

}  // namespace moe::train
