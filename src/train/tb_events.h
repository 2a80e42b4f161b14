// TensorBoard event files written and read without a protobuf library.
//
// An event file is a sequence of TFRecord records:
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// where data is a serialized tensorflow.Event. The wire format is hand-encoded for the few fields used
// (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto, tsl histogram.proto):
//   Event:          wall_time=1 double, step=2 int64, file_version=3 string, summary=5 Summary
//   Summary:        value=1 repeated Value
//   Summary.Value:  tag=1 string, simple_value=2 float, histo=5 HistogramProto
//   HistogramProto: min=1, max=2, num=3, sum=4, sum_squares=5 double;
//                   bucket_limit=6, bucket=7 packed repeated double
// Bucket i of a HistogramProto counts values in [bucket_limit[i-1], bucket_limit[i]) (bucket 0 starts at
// -infinity), which is how TensorBoard draws it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moe::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as in RFC 3720 B.4.
uint32_t crc32c(const void* data, size_t size);
// Continues a CRC-32C over more bytes: crc32c_extend(crc32c(a), b) == crc32c(a + b), and
// crc32c_extend(0, a) == crc32c(a). For data streamed in pieces (checkpoints).
uint32_t crc32c_extend(uint32_t crc, const void* data, size_t size);
// The TFRecord checksum: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

// TensorFlow's default histogram bucket limits (tensorflow/core/lib/histogram/histogram.cc): -DBL_MAX,
// the negated exponential limits -1e20.. -1e-12, 0, the limits 1e-12 * 1.1^k below 1e20, DBL_MAX.
// Strictly increasing.
const std::vector<double>& default_bucket_limits();

// Appends log events to a new file `events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n>` in logdir
// (created with its parents if missing; n makes several writers of one process in one second distinct).
// The first record, written and flushed by the constructor, is the file_version "brain.Event:2" event.
// Each call appends one Event (wall_time = now) holding one Summary.Value. Writes go through a buffered
// FILE*: TensorBoard sees them after flush() or when the writer is destroyed. Any failure to create or
// write the file throws moe::Error naming the path. Not thread-safe.
class EventWriter {
 public:
  explicit EventWriter(const std::string& logdir);
  ~EventWriter();  // flushes and closes; errors there are swallowed, call close() to see them
  EventWriter(EventWriter&& other) noexcept;
  EventWriter& operator=(EventWriter&&) = delete;
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // simple_value is a float on the wire, so value is rounded to float precision.
  void scalar(const std::string& tag, int64_t step, double value);

  // A histogram of raw samples over default_bucket_limits(), encoded as TensorFlow does: runs of empty
  // buckets collapse into one zero bucket that keeps the run's last limit, so every remaining bucket keeps
  // its true lower edge (the previous limit); at least one bucket is always written. NaN samples are
  // ignored (not counted); -inf and +inf land in the first and last bucket.
  void histogram(const std::string& tag, int64_t step, std::span<const double> values);

  // A histogram whose buckets the caller already counted (e.g. per-expert token counts with limits
  // 0.5, 1.5, ..., E-0.5 so that bucket e covers expert e). Written as given: bucket_limits must be
  // non-empty, strictly increasing, and as long as counts; counts must be finite and >= 0.
  void histogram_counts(const std::string& tag, int64_t step, std::span<const double> bucket_limits,
                        std::span<const double> counts, double min, double max, double sum, double sum_sq);

  void flush();
  // Flushes and closes the file, throwing on failure; later writes throw.
  void close();
  const std::string& path() const { return path_; }

 private:
  void write_event(const std::string& event);
  void write_raw(const void* data, size_t size);

  std::string path_;
  std::FILE* file_ = nullptr;
};

struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit;
  std::vector<double> bucket;
};

struct SummaryValue {
  std::string tag;
  std::optional<float> simple_value;
  std::optional<Histogram> histo;
};

struct Event {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;  // empty unless this is a file_version event
  std::vector<SummaryValue> values;
};

// Reads every record of an event file, verifying both CRCs of each. A corrupt or truncated record, or
// data that is not a well-formed Event, throws moe::Error naming the file, the record index (from 0)
// and its byte offset. Unknown fields are skipped according to their wire type, so files from other
// writers (e.g. with SummaryMetadata or graph events) read fine; their other contents are not returned.
std::vector<Event> read_events(const std::string& path);

// The serialized Event for one record's data; exposed for tests. Throws moe::Error on malformed input.
Event parse_event(std::string_view data);

}  // namespace moe::train
