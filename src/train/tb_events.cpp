#include "train/tb_events.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "core/error.h"

namespace moe::train {

namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

// Appends protobuf wire-format fields; only the encodings the Event subset needs.
class Encoder {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    buf_.push_back(static_cast<char>(v));
  }
  void key(uint32_t field, WireType wt) { varint((uint64_t{field} << 3) | wt); }
  void double_field(uint32_t field, double v) {
    key(field, kFixed64);
    put_le(buf_, std::bit_cast<uint64_t>(v), 8);
  }
  void float_field(uint32_t field, float v) {
    key(field, kFixed32);
    put_le(buf_, std::bit_cast<uint32_t>(v), 4);
  }
  void int64_field(uint32_t field, int64_t v) {
    key(field, kVarint);
    varint(static_cast<uint64_t>(v));  // negative int64 is a 10-byte two's complement varint
  }
  void bytes_field(uint32_t field, std::string_view s) {
    key(field, kLengthDelimited);
    varint(s.size());
    buf_.append(s);
  }
  void packed_doubles(uint32_t field, std::span<const double> vs) {
    key(field, kLengthDelimited);
    varint(vs.size() * 8);
    for (double v : vs) put_le(buf_, std::bit_cast<uint64_t>(v), 8);
  }
  const std::string& str() const { return buf_; }

 private:
  std::string buf_;
};

// Reads protobuf wire-format fields from one message, with every read bounds-checked.
class Decoder {
 public:
  Decoder(std::string_view data, const char* message) : data_(data), message_(message) {}

  bool done() const { return pos_ >= data_.size(); }

  // Returns {field number, wire type}.
  std::pair<uint32_t, uint32_t> key() {
    const size_t at = pos_;
    const uint64_t k = varint();
    const uint64_t field = k >> 3;
    if (field == 0 || field > 0x1FFFFFFF) bad("invalid field number ", field, " in key at byte ", at);
    return {static_cast<uint32_t>(field), static_cast<uint32_t>(k & 7)};
  }

  uint64_t varint() {
    const size_t at = pos_;
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) bad("truncated varint at byte ", at);
      const auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= uint64_t{b & 0x7Fu} << shift;
      if (b < 0x80) return v;
    }
    bad("varint longer than 10 bytes at byte ", at);
  }

  uint64_t fixed(int bytes) {
    need(bytes, "fixed-width field");
    const uint64_t v = get_le(data_.data() + pos_, bytes);
    pos_ += bytes;
    return v;
  }
  double fixed_double() { return std::bit_cast<double>(fixed(8)); }
  float fixed_float() { return std::bit_cast<float>(static_cast<uint32_t>(fixed(4))); }

  std::string_view length_delimited() {
    const uint64_t n = varint();
    need(n, "length-delimited field");
    std::string_view s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }

  // Appends a packed (wire type 2) or single (wire type 1) repeated double.
  void repeated_double(uint32_t wt, uint32_t field, std::vector<double>& out) {
    if (wt == kFixed64) {
      out.push_back(fixed_double());
      return;
    }
    const std::string_view s = length_delimited();
    if (s.size() % 8 != 0)
      bad("packed double field ", field, " has ", s.size(), " bytes, not a multiple of 8");
    for (size_t i = 0; i < s.size(); i += 8) out.push_back(std::bit_cast<double>(get_le(s.data() + i, 8)));
  }

  void skip(uint32_t field, uint32_t wt, int depth = 0) {
    switch (wt) {
      case kVarint:
        varint();
        return;
      case kFixed64:
        fixed(8);
        return;
      case kFixed32:
        fixed(4);
        return;
      case kLengthDelimited:
        length_delimited();
        return;
      case kStartGroup:
        if (depth >= 64) bad("groups nested deeper than 64");
        for (;;) {
          if (done()) bad("unterminated group, field ", field);
          const auto [f, w] = key();
          if (w == kEndGroup) {
            if (f != field) bad("group ", field, " ended by end-group of field ", f);
            return;
          }
          skip(f, w, depth + 1);
        }
      case kEndGroup:
        bad("unexpected end-group, field ", field, " at byte ", pos_);
      default:
        bad("invalid wire type ", wt, " for field ", field, " at byte ", pos_);
    }
  }

  template <class... Args>
  [[noreturn]] void bad(Args&&... args) const {
    fail("malformed ", message_, ": ", std::forward<Args>(args)...);
  }

 private:
  void need(uint64_t n, const char* what) const {
    if (n > data_.size() - pos_) {
      bad("truncated ", what, " at byte ", pos_, " (needs ", n, " bytes, ", data_.size() - pos_, " left)");
    }
  }

  std::string_view data_;
  const char* message_;
  size_t pos_ = 0;
};

void parse_histogram(std::string_view data, Histogram& h) {
  Decoder d(data, "HistogramProto");
  while (!d.done()) {
    const auto [field, wt] = d.key();
    if (field >= 1 && field <= 5 && wt == kFixed64) {
      double* const slots[] = {&h.min, &h.max, &h.num, &h.sum, &h.sum_squares};
      *slots[field - 1] = d.fixed_double();
    } else if ((field == 6 || field == 7) && (wt == kLengthDelimited || wt == kFixed64)) {
      d.repeated_double(wt, field, field == 6 ? h.bucket_limit : h.bucket);
    } else {
      d.skip(field, wt);
    }
  }
  if (h.bucket_limit.size() != h.bucket.size()) {
    d.bad(h.bucket_limit.size(), " bucket limits but ", h.bucket.size(), " bucket counts");
  }
}

SummaryValue parse_value(std::string_view data) {
  SummaryValue v;
  Decoder d(data, "Summary.Value");
  while (!d.done()) {
    const auto [field, wt] = d.key();
    if (field == 1 && wt == kLengthDelimited) {
      v.tag = std::string(d.length_delimited());
    } else if (field == 2 && wt == kFixed32) {
      v.simple_value = d.fixed_float();
    } else if (field == 5 && wt == kLengthDelimited) {
      const std::string_view sub = d.length_delimited();
      if (!v.histo) v.histo.emplace();
      parse_histogram(sub, *v.histo);  // a repeated sub-message merges, as protobuf parsers do
    } else {
      d.skip(field, wt);
    }
  }
  return v;
}

void parse_summary(std::string_view data, std::vector<SummaryValue>& out) {
  Decoder d(data, "Summary");
  while (!d.done()) {
    const auto [field, wt] = d.key();
    if (field == 1 && wt == kLengthDelimited) {
      out.push_back(parse_value(d.length_delimited()));
    } else {
      d.skip(field, wt);
    }
  }
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string h(buf);
  std::replace(h.begin(), h.end(), '/', '_');
  return h;
}

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Round-to-nearest double -> float without the undefined behaviour of converting an out-of-range value:
// magnitudes at or beyond FLT_MAX + half an ulp become infinities, as an IEEE conversion would give.
float to_float(double v) {
  const double kOverflow = static_cast<double>(FLT_MAX) + std::ldexp(1.0, 103);
  if (std::isfinite(v) && std::fabs(v) >= kOverflow) return v > 0 ? INFINITY : -INFINITY;
  return static_cast<float>(v);
}

void check_tag(const std::string& tag) {
  MOE_CHECK(!tag.empty(), "TensorBoard summary tag must not be empty");
}

std::string summary_event(int64_t step, const std::string& value) {
  Encoder summary;
  summary.bytes_field(1, value);
  Encoder event;
  event.double_field(1, wall_time_now());
  event.int64_field(2, step);
  event.bytes_field(5, summary.str());
  return event.str();
}

std::string histo_value(const std::string& tag, std::span<const double> limits,
                        std::span<const double> counts, double min, double max, double num, double sum,
                        double sum_sq) {
  Encoder h;
  h.double_field(1, min);
  h.double_field(2, max);
  h.double_field(3, num);
  h.double_field(4, sum);
  h.double_field(5, sum_sq);
  h.packed_doubles(6, limits);
  h.packed_doubles(7, counts);
  Encoder value;
  value.bytes_field(1, tag);
  value.bytes_field(5, h.str());
  return value.str();
}

#if defined(__x86_64__)
// SSE4.2's crc32 instruction computes exactly this CRC (same polynomial, reflected, no final xor):
// 8 bytes per instruction instead of one table lookup per byte, which matters for multi-GB checkpoints.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(uint32_t c, const unsigned char* p, size_t size) {
  uint64_t c64 = c;
  for (; size >= 8; size -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c64 = __builtin_ia32_crc32di(c64, word);
  }
  c = static_cast<uint32_t>(c64);
  for (; size > 0; --size, ++p) c = __builtin_ia32_crc32qi(c, *p);
  return c;
}
#endif

}  // namespace

uint32_t crc32c_extend(uint32_t crc, const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
#if defined(__x86_64__)
  static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
  if (has_sse42) return crc32c_sse42(c, p, size) ^ 0xFFFFFFFFu;
#endif
  for (size_t i = 0; i < size; ++i) c = kCrcTable[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t crc32c(const void* data, size_t size) { return crc32c_extend(0, data, size); }

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

const std::vector<double>& default_bucket_limits() {
  static const std::vector<double> limits = [] {
    std::vector<double> pos;
    for (double v = 1.0e-12; v < 1.0e20; v *= 1.1) pos.push_back(v);
    pos.push_back(DBL_MAX);
    std::vector<double> all;
    all.reserve(2 * pos.size() + 1);
    for (auto it = pos.rbegin(); it != pos.rend(); ++it) all.push_back(-*it);
    all.push_back(0.0);
    all.insert(all.end(), pos.begin(), pos.end());
    return all;
  }();
  return limits;
}

EventWriter::EventWriter(const std::string& logdir) {
  namespace fs = std::filesystem;
  MOE_CHECK(!logdir.empty(), "TensorBoard log directory must not be empty");
  std::error_code ec;
  fs::create_directories(logdir, ec);
  if (ec || !fs::is_directory(logdir)) {
    fail("cannot create TensorBoard log directory ", logdir, ": ", ec ? ec.message() : "not a directory");
  }
  static std::atomic<uint64_t> counter{0};
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  path_ = (fs::path(logdir) / str_cat("events.out.tfevents.", seconds.count(), ".", hostname(), ".", getpid(),
                                      ".", counter.fetch_add(1)))
              .string();
  file_ = std::fopen(path_.c_str(), "wbx");  // x: never clobber another writer's file
  if (file_ == nullptr) fail("cannot create TensorBoard event file ", path_, ": ", std::strerror(errno));

  Encoder event;
  event.double_field(1, wall_time_now());
  event.bytes_field(3, "brain.Event:2");
  write_event(event.str());
  flush();
}

EventWriter::EventWriter(EventWriter&& other) noexcept
    : path_(std::move(other.path_)), file_(std::exchange(other.file_, nullptr)) {}

EventWriter::~EventWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void EventWriter::scalar(const std::string& tag, int64_t step, double value) {
  check_tag(tag);
  Encoder v;
  v.bytes_field(1, tag);
  v.float_field(2, to_float(value));
  write_event(summary_event(step, v.str()));
}

void EventWriter::histogram(const std::string& tag, int64_t step, std::span<const double> values) {
  check_tag(tag);
  const std::vector<double>& limits = default_bucket_limits();
  std::vector<double> counts(limits.size(), 0.0);
  double min = limits.back(), max = -DBL_MAX, num = 0, sum = 0, sum_sq = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    // Bucket b holds [limits[b-1], limits[b]); values >= DBL_MAX go to the last bucket.
    const size_t b = std::upper_bound(limits.begin(), limits.end(), v) - limits.begin();
    counts[std::min(b, limits.size() - 1)] += 1.0;
    min = std::min(min, v);
    max = std::max(max, v);
    num += 1.0;
    sum += v;
    sum_sq += v * v;
  }
  // Collapse each run of empty buckets into one zero bucket carrying the run's last limit, which keeps
  // the lower edge of the following bucket intact (TensorFlow's Histogram::EncodeToProto).
  std::vector<double> out_limits, out_counts;
  for (size_t i = 0; i < counts.size();) {
    double end = limits[i];
    const double count = counts[i++];
    if (count <= 0.0) {
      while (i < counts.size() && counts[i] <= 0.0) end = limits[i++];
    }
    out_limits.push_back(end);
    out_counts.push_back(count);
  }
  write_event(summary_event(step, histo_value(tag, out_limits, out_counts, min, max, num, sum, sum_sq)));
}

void EventWriter::histogram_counts(const std::string& tag, int64_t step,
                                   std::span<const double> bucket_limits, std::span<const double> counts,
                                   double min, double max, double sum, double sum_sq) {
  check_tag(tag);
  MOE_CHECK(!bucket_limits.empty(), "histogram '", tag, "': no buckets");
  MOE_CHECK(bucket_limits.size() == counts.size(), "histogram '", tag, "': ", bucket_limits.size(),
            " bucket limits but ", counts.size(), " counts");
  double num = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    MOE_CHECK(std::isfinite(counts[i]) && counts[i] >= 0, "histogram '", tag, "': bucket ", i, " count ",
              counts[i], " is not a finite non-negative number");
    MOE_CHECK(i == 0 || bucket_limits[i] > bucket_limits[i - 1], "histogram '", tag,
              "': bucket limits must be strictly increasing, but limit ", i, " is ", bucket_limits[i],
              " after ", bucket_limits[i - 1]);
    num += counts[i];
  }
  write_event(summary_event(step, histo_value(tag, bucket_limits, counts, min, max, num, sum, sum_sq)));
}

void EventWriter::flush() {
  MOE_CHECK(file_ != nullptr, "TensorBoard event file ", path_, " is closed");
  if (std::fflush(file_) != 0)
    fail("cannot write TensorBoard event file ", path_, ": ", std::strerror(errno));
}

void EventWriter::close() {
  if (file_ == nullptr) return;
  const bool flushed = std::fflush(file_) == 0;
  const int flush_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) {
    fail("cannot write TensorBoard event file ", path_, ": ", std::strerror(flushed ? errno : flush_errno));
  }
}

void EventWriter::write_event(const std::string& event) {
  std::string header;
  put_le(header, event.size(), 8);
  put_le(header, masked_crc32c(header.data(), 8), 4);
  std::string footer;
  put_le(footer, masked_crc32c(event.data(), event.size()), 4);
  write_raw(header.data(), header.size());
  write_raw(event.data(), event.size());
  write_raw(footer.data(), footer.size());
}

void EventWriter::write_raw(const void* data, size_t size) {
  MOE_CHECK(file_ != nullptr, "TensorBoard event file ", path_, " is closed");
  if (std::fwrite(data, 1, size, file_) != size) {
    fail("cannot write TensorBoard event file ", path_, ": ", std::strerror(errno));
  }
}

Event parse_event(std::string_view data) {
  Event e;
  Decoder d(data, "Event");
  while (!d.done()) {
    const auto [field, wt] = d.key();
    if (field == 1 && wt == kFixed64) {
      e.wall_time = d.fixed_double();
    } else if (field == 2 && wt == kVarint) {
      e.step = static_cast<int64_t>(d.varint());
    } else if (field == 3 && wt == kLengthDelimited) {
      e.file_version = std::string(d.length_delimited());
    } else if (field == 5 && wt == kLengthDelimited) {
      parse_summary(d.length_delimited(), e.values);
    } else {
      d.skip(field, wt);
    }
  }
  return e;
}

std::vector<Event> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open TensorBoard event file ", path, ": ", std::strerror(errno));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("cannot read TensorBoard event file ", path);

  std::vector<Event> events;
  size_t pos = 0;
  for (size_t index = 0; pos < bytes.size(); ++index) {
    const size_t left = bytes.size() - pos;
    auto where = [&](auto&&... msg) {
      fail(path, ": record ", index, " at byte offset ", pos, ": ", std::forward<decltype(msg)>(msg)...);
    };
    const char* p = bytes.data() + pos;
    if (left < 12) where("truncated record header (", left, " of 12 bytes)");
    const uint32_t len_crc = static_cast<uint32_t>(get_le(p + 8, 4));
    const uint32_t want_len_crc = masked_crc32c(p, 8);
    if (len_crc != want_len_crc) {
      where("length CRC mismatch (stored 0x", std::hex, len_crc, ", computed 0x", want_len_crc,
            "): corrupt record header");
    }
    const uint64_t len = get_le(p, 8);
    if (len > left - 12 || left - 12 - len < 4) {
      where("truncated record: header declares ", len, " data bytes + 4 CRC bytes, but only ", left - 12,
            " bytes follow");
    }
    const std::string_view data(p + 12, len);
    const uint32_t data_crc = static_cast<uint32_t>(get_le(p + 12 + len, 4));
    const uint32_t want_data_crc = masked_crc32c(data.data(), data.size());
    if (data_crc != want_data_crc) {
      where("data CRC mismatch (stored 0x", std::hex, data_crc, ", computed 0x", want_data_crc,
            "): corrupt record data");
    }
    try {
      events.push_back(parse_event(data));
    } catch (const Error& e) {
      where(e.what());
    }
    pos += 16 + len;
  }
  return events;
}

}  // namespace moe::train
