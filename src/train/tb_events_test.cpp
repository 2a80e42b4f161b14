#include "train/tb_events.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "testdata.h"

namespace moe::train {
namespace {

using test::error_of;

namespace fs = std::filesystem;

class TbEvents : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("tb_events_test_" + std::to_string(getpid()) + "_" + std::to_string(n++));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

uint64_t le64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A test-side protobuf encoder, written from the wire-format spec independently of the one under test.
struct Pb {
  std::string b;
  Pb& varint(uint64_t v) {
    do {
      b.push_back(static_cast<char>((v & 0x7F) | (v >= 0x80 ? 0x80 : 0)));
      v >>= 7;
    } while (v != 0);
    return *this;
  }
  Pb& key(uint32_t field, int wt) { return varint(uint64_t{field} << 3 | wt); }
  Pb& raw(const void* p, size_t n) {
    b.append(static_cast<const char*>(p), n);
    return *this;
  }
  Pb& f64(uint32_t field, double v) { return key(field, 1).raw(&v, 8); }
  Pb& f32(uint32_t field, float v) { return key(field, 5).raw(&v, 4); }
  Pb& str(uint32_t field, const std::string& s) {
    return key(field, 2).varint(s.size()).raw(s.data(), s.size());
  }
};

std::string record(const std::string& data) {
  std::string r;
  const uint64_t n = data.size();
  r.append(reinterpret_cast<const char*>(&n), 8);
  const uint32_t len_crc = masked_crc32c(r.data(), 8);
  r.append(reinterpret_cast<const char*>(&len_crc), 4);
  r += data;
  const uint32_t data_crc = masked_crc32c(data.data(), data.size());
  r.append(reinterpret_cast<const char*>(&data_crc), 4);
  return r;
}

TEST_F(TbEvents, Crc32cMatchesRfc3720Vectors) {
  std::vector<unsigned char> buf(32, 0x00);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; ++i) buf[i] = static_cast<unsigned char>(31 - i);
  EXPECT_EQ(crc32c(buf.data(), buf.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C catalogue check value
  EXPECT_EQ(crc32c("", 0), 0u);
  EXPECT_EQ(masked_crc32c("", 0), 0xA282EAD8u);  // rotate(0) + delta
  // 0x8A9136AA rotated right by 15 is 0x6D55_1522, plus 0xA282EAD8 is 0x0FD7FFFA (mod 2^32).
  std::fill(buf.begin(), buf.end(), 0x00);
  EXPECT_EQ(masked_crc32c(buf.data(), buf.size()), 0x0FD7FFFAu);
}

TEST_F(TbEvents, DefaultBucketLimitsFollowTensorFlow) {
  const std::vector<double>& l = default_bucket_limits();
  ASSERT_EQ(l.size() % 2, 1u);
  const size_t mid = l.size() / 2;
  EXPECT_EQ(l[mid], 0.0);
  EXPECT_EQ(l.front(), -DBL_MAX);
  EXPECT_EQ(l.back(), DBL_MAX);
  EXPECT_EQ(l[mid + 1], 1e-12);
  EXPECT_LT(l[l.size() - 2], 1e20);
  EXPECT_GE(l[l.size() - 2] * 1.1, 1e20);
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_EQ(l[i], -l[l.size() - 1 - i]) << i;
    if (i > 0) {
      EXPECT_LT(l[i - 1], l[i]) << i;
    }
  }
  // log(1e32) / log(1.1) = 773.1..., so 774 exponential limits on each side.
  EXPECT_EQ(l.size(), 2u * (774 + 1) + 1);
}

TEST_F(TbEvents, WriteThenReadBackExactly) {
  const double t0 = now_seconds();
  EventWriter w((dir_ / "nested" / "run1").string());
  const std::string name = fs::path(w.path()).filename().string();
  // events.out.tfevents.<10-digit seconds>.<host>.<pid>.<n>
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  const std::vector<std::string> parts = split(name.substr(prefix.size()), '.');
  ASSERT_GE(parts.size(), 4u) << name;
  EXPECT_EQ(parts[0].size(), 10u) << name;
  EXPECT_NEAR(std::stod(parts[0]), t0, 2.0) << name;
  EXPECT_EQ(parts[parts.size() - 2], std::to_string(getpid())) << name;
  EXPECT_EQ(parts.back().find_first_not_of("0123456789"), std::string::npos) << name;
  EXPECT_EQ(fs::path(w.path()).parent_path(), dir_ / "nested" / "run1");

  // The file_version record is on disk before anything else is flushed.
  std::vector<Event> early = read_events(w.path());
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0].file_version, "brain.Event:2");

  w.scalar("train/loss", 0, 2.5);
  w.scalar("train/lr", 1, 0.1);  // not representable: stored as float(0.1)
  w.scalar("train/tokens_per_s", 1'000'000'000'000LL, 123456.789);
  w.scalar("neg/step", -3, -1e-30);
  w.scalar("overflow", 7, 1e300);
  const std::vector<double> limits = {0.5, 1.5, 2.5, 3.5};
  const std::vector<double> counts = {10, 0, 25, 5};
  w.histogram_counts("moe/layer_0/expert_frequency", 42, limits, counts, 0, 3, 65, 165);
  w.flush();
  const double t1 = now_seconds();

  const std::vector<Event> ev = read_events(w.path());
  ASSERT_EQ(ev.size(), 7u);
  EXPECT_EQ(ev[0].file_version, "brain.Event:2");
  EXPECT_TRUE(ev[0].values.empty());
  for (const Event& e : ev) {
    EXPECT_GE(e.wall_time, t0 - 1e-3);
    EXPECT_LE(e.wall_time, t1 + 1e-3);
    EXPECT_GE(e.wall_time, ev[0].wall_time);
  }
  struct Want {
    const char* tag;
    int64_t step;
    float value;
  };
  const Want want[] = {{"train/loss", 0, 2.5f},
                       {"train/lr", 1, 0.1f},
                       {"train/tokens_per_s", 1'000'000'000'000LL, 123456.789f},
                       {"neg/step", -3, -1e-30f},
                       {"overflow", 7, std::numeric_limits<float>::infinity()}};
  for (size_t i = 0; i < 5; ++i) {
    const Event& e = ev[i + 1];
    EXPECT_TRUE(e.file_version.empty());
    EXPECT_EQ(e.step, want[i].step);
    ASSERT_EQ(e.values.size(), 1u);
    EXPECT_EQ(e.values[0].tag, want[i].tag);
    ASSERT_TRUE(e.values[0].simple_value.has_value());
    EXPECT_EQ(*e.values[0].simple_value, want[i].value) << want[i].tag;
    EXPECT_FALSE(e.values[0].histo.has_value());
  }
  const Event& h = ev[6];
  EXPECT_EQ(h.step, 42);
  ASSERT_EQ(h.values.size(), 1u);
  EXPECT_EQ(h.values[0].tag, "moe/layer_0/expert_frequency");
  EXPECT_FALSE(h.values[0].simple_value.has_value());
  ASSERT_TRUE(h.values[0].histo.has_value());
  const Histogram& hi = *h.values[0].histo;
  EXPECT_EQ(hi.bucket_limit, limits);
  EXPECT_EQ(hi.bucket, counts);
  EXPECT_EQ(hi.min, 0);
  EXPECT_EQ(hi.max, 3);
  EXPECT_EQ(hi.num, 40);
  EXPECT_EQ(hi.sum, 65);
  EXPECT_EQ(hi.sum_squares, 165);

  // A second writer in the same directory and second gets its own file.
  EventWriter w2((dir_ / "nested" / "run1").string());
  EXPECT_NE(w2.path(), w.path());

  w.close();
  EXPECT_NE(error_of([&] { w.scalar("x", 0, 1); }).find("closed"), std::string::npos);
  EXPECT_EQ(read_events(w.path()).size(), 7u);
}

TEST_F(TbEvents, RawHistogramBucketsPartitionTheSamples) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 3.0);
  std::vector<double> samples = {0.0,   1.0,   -1.0,    1e-13,    -1e-13,       5.5,      5.5,      1e25,
                                 -1e25, 1e-12, DBL_MAX, -DBL_MAX, std::nan(""), INFINITY, -INFINITY};
  for (int i = 0; i < 2000; ++i) samples.push_back(normal(rng));

  EventWriter w(dir_.string());
  w.histogram("weights", 3, samples);
  w.histogram("empty", 4, {});
  w.flush();
  const std::vector<Event> ev = read_events(w.path());
  ASSERT_EQ(ev.size(), 3u);
  ASSERT_EQ(ev[1].values.size(), 1u);
  ASSERT_TRUE(ev[1].values[0].histo.has_value());
  const Histogram& h = *ev[1].values[0].histo;

  std::vector<double> counted;  // the non-NaN samples
  for (double v : samples) {
    if (!std::isnan(v)) counted.push_back(v);
  }
  EXPECT_EQ(h.num, static_cast<double>(counted.size()));
  ASSERT_EQ(h.bucket.size(), h.bucket_limit.size());
  ASSERT_FALSE(h.bucket.empty());
  double total = 0;
  for (double c : h.bucket) total += c;
  EXPECT_EQ(total, static_cast<double>(counted.size()));
  EXPECT_EQ(h.min, -INFINITY);
  EXPECT_EQ(h.max, INFINITY);
  EXPECT_EQ(h.bucket_limit.back(), DBL_MAX);

  // Every written bucket [previous limit, limit) holds exactly the samples in that range, except that the
  // last bucket also takes DBL_MAX and +inf; empty runs are collapsed so no two zero buckets are adjacent.
  for (size_t i = 0; i < h.bucket.size(); ++i) {
    const double lo = i == 0 ? -INFINITY : h.bucket_limit[i - 1];
    const double hi = h.bucket_limit[i];
    const bool last = i + 1 == h.bucket.size();
    if (i > 0) {
      EXPECT_LT(lo, hi) << i;
      EXPECT_FALSE(h.bucket[i] == 0 && h.bucket[i - 1] == 0) << "uncollapsed empty run at " << i;
    }
    double n = 0;
    for (double v : counted) n += (v >= lo && (v < hi || last)) ? 1 : 0;
    EXPECT_EQ(h.bucket[i], n) << "bucket " << i << " [" << lo << ", " << hi << ")";
  }
  // The three 1.0/5.5 style singletons show that limits are TensorFlow's: 1.0 falls in the bucket whose
  // limit is the first 1e-12 * 1.1^k above 1.0.
  double first_above_one = 1e-12;
  while (first_above_one <= 1.0) first_above_one *= 1.1;
  EXPECT_NE(std::find(h.bucket_limit.begin(), h.bucket_limit.end(), first_above_one), h.bucket_limit.end());
  EXPECT_LT(h.bucket.size(), 400u);  // collapsed, not all 1551 default buckets

  const Histogram& e = *ev[2].values.at(0).histo;
  EXPECT_EQ(e.num, 0);
  EXPECT_EQ(e.bucket_limit, std::vector<double>{DBL_MAX});
  EXPECT_EQ(e.bucket, std::vector<double>{0.0});
  EXPECT_EQ(e.min, DBL_MAX);
  EXPECT_EQ(e.max, -DBL_MAX);
}

TEST_F(TbEvents, RejectsBadInputWithClearErrors) {
  EventWriter w(dir_.string());
  const std::vector<double> l2 = {1, 2}, c1 = {3};
  EXPECT_NE(
      error_of([&] { w.histogram_counts("h", 0, l2, c1, 0, 0, 0, 0); }).find("2 bucket limits but 1 counts"),
      std::string::npos);
  const std::vector<double> dec = {2, 1}, c2 = {1, 1};
  EXPECT_NE(error_of([&] { w.histogram_counts("h", 0, dec, c2, 0, 0, 0, 0); }).find("strictly increasing"),
            std::string::npos);
  const std::vector<double> neg = {1, -1};
  EXPECT_NE(error_of([&] { w.histogram_counts("h", 0, l2, neg, 0, 0, 0, 0); }).find("bucket 1 count -1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.histogram_counts("h", 0, {}, {}, 0, 0, 0, 0); }).find("no buckets"),
            std::string::npos);
  EXPECT_NE(error_of([&] { w.scalar("", 0, 1); }).find("tag must not be empty"), std::string::npos);
  w.flush();
  EXPECT_EQ(read_events(w.path()).size(), 1u);  // rejected calls wrote nothing

  const std::string file = (dir_ / "plain_file").string();
  write_file(file, "x");
  const std::string msg = error_of([&] { EventWriter bad(file + "/sub"); });
  EXPECT_NE(msg.find(file + "/sub"), std::string::npos) << msg;
  const std::string missing = (dir_ / "no_such_file").string();
  EXPECT_NE(error_of([&] { read_events(missing); }).find(missing), std::string::npos);
}

TEST_F(TbEvents, CorruptionAndTruncationAreDetected) {
  std::string path;
  {
    EventWriter w(dir_.string());
    w.scalar("a", 1, 1.0);
    w.scalar("b", 2, 2.0);
    path = w.path();
  }
  const std::string good = read_file(path);
  const size_t r1 = 16 + le64(good, 0);  // offset of record 1
  const size_t len1 = le64(good, r1);
  ASSERT_EQ(read_events(path).size(), 3u);

  struct Case {
    size_t at;
    const char* expect;
  };
  const Case flips[] = {{r1 + 0, "length CRC mismatch"},           {r1 + 7, "length CRC mismatch"},
                        {r1 + 9, "length CRC mismatch"},           {r1 + 12 + 2, "data CRC mismatch"},
                        {r1 + 12 + len1 - 1, "data CRC mismatch"}, {r1 + 12 + len1 + 3, "data CRC mismatch"}};
  const std::string where = path + ": record 1 at byte offset " + std::to_string(r1) + ": ";
  for (const Case& c : flips) {
    std::string bad = good;
    bad[c.at] ^= 0x10;
    write_file(path, bad);
    const std::string msg = error_of([&] { read_events(path); });
    EXPECT_EQ(msg.rfind(where, 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "flip at " << c.at << ": " << msg;
  }
  const Case cuts[] = {{r1 + 5, "truncated record header (5 of 12 bytes)"},
                       {r1 + 12 + 3, "truncated record"},
                       {r1 + 12 + len1 + 2, "truncated record"}};
  for (const Case& c : cuts) {
    write_file(path, good.substr(0, c.at));
    const std::string msg = error_of([&] { read_events(path); });
    EXPECT_EQ(msg.rfind(where, 0), 0u) << msg;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << "cut at " << c.at << ": " << msg;
  }
  write_file(path, good.substr(0, r1));  // a cut on a record boundary is a shorter valid file
  EXPECT_EQ(read_events(path).size(), 1u);

  // Valid CRCs around data that is not a valid Event: a length-delimited field running past the end.
  write_file(path, good.substr(0, r1) + record(std::string("\x0a\x7f", 2)));
  const std::string msg = error_of([&] { read_events(path); });
  EXPECT_EQ(msg.rfind(where, 0), 0u) << msg;
  EXPECT_NE(msg.find("malformed Event: truncated length-delimited field"), std::string::npos) << msg;
  write_file(path, record(Pb().key(2, 0).raw("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11).b));
  EXPECT_NE(error_of([&] { read_events(path); }).find("varint longer than 10 bytes"), std::string::npos);
  write_file(path, record(Pb().key(5, 2).varint(2).key(1, 7).varint(0).b));
  EXPECT_NE(error_of([&] { read_events(path); }).find("malformed Summary: invalid wire type 7"),
            std::string::npos);
}

TEST_F(TbEvents, UnknownFieldsAreSkippedByWireType) {
  Pb meta;  // SummaryMetadata { plugin_data { plugin_name: "histograms" } }
  meta.str(1, Pb().str(1, "histograms").b);
  Pb histo;
  histo.f64(1, -1).f64(2, 4).f64(3, 3).f64(4, 5).f64(5, 21);
  histo.f64(6, 0).f64(6, 10);  // unpacked repeated doubles
  const double counts[2] = {1, 2};
  histo.key(7, 2).varint(16).raw(counts, 16);
  histo.key(8, 0).varint(300);  // unknown varint
  Pb value;
  value.str(1, "layer/0/frequency").str(9, meta.b).str(5, histo.b).key(12, 5).raw("abcd", 4);
  Pb event;
  event.f64(1, 1700000000.25).key(2, 0).varint(9);
  event.key(4, 2).varint(3).raw("xyz", 3);                              // graph_def (bytes)
  event.key(10, 3).key(1, 0).varint(5).key(2, 3).key(2, 4).key(10, 4);  // nested groups
  event.key(11, 5).raw("\1\2\3\4", 4).key(12, 1).raw("12345678", 8);
  event.str(5, Pb().str(1, value.b).str(1, Pb().str(1, "s").f32(2, 0.5f).b).b);
  event.key(2, 1).raw("\0\0\0\0\0\0\0\0", 8);  // a known field with a foreign wire type is unknown too

  const std::string path = (dir_ / "crafted").string();
  fs::create_directories(dir_);
  write_file(path, record(event.b));
  const std::vector<Event> ev = read_events(path);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].wall_time, 1700000000.25);
  EXPECT_EQ(ev[0].step, 9);
  ASSERT_EQ(ev[0].values.size(), 2u);
  EXPECT_EQ(ev[0].values[0].tag, "layer/0/frequency");
  ASSERT_TRUE(ev[0].values[0].histo.has_value());
  const Histogram& h = *ev[0].values[0].histo;
  EXPECT_EQ(h.min, -1);
  EXPECT_EQ(h.max, 4);
  EXPECT_EQ(h.num, 3);
  EXPECT_EQ(h.sum, 5);
  EXPECT_EQ(h.sum_squares, 21);
  EXPECT_EQ(h.bucket_limit, (std::vector<double>{0, 10}));
  EXPECT_EQ(h.bucket, (std::vector<double>{1, 2}));
  EXPECT_EQ(ev[0].values[1].tag, "s");
  EXPECT_EQ(ev[0].values[1].simple_value, 0.5f);

  write_file(path, record(Pb().key(10, 3).key(1, 0).varint(5).key(11, 4).b));
  EXPECT_NE(error_of([&] { read_events(path); }).find("group 10 ended by end-group of field 11"),
            std::string::npos);
}

// An independent reader: Python's standard library only, with its own CRC-32C and varint parser.
constexpr const char* kPythonReader = R"PY(
import struct, sys
T = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T.append(c)
def masked_crc(b):
    c = 0xFFFFFFFF
    for x in b:
        c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
def varint(b, i):
    r, s = 0, 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i
def fields(b):
    i = 0
    while i < len(b):
        k, i = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % w)
        yield f, w, v
def dbl(v):
    return struct.unpack("<d", v)[0]
def dbls(v):
    return ",".join(repr(x) for x in struct.unpack("<%dd" % (len(v) // 8), v))
data = open(sys.argv[1], "rb").read()
pos, count = 0, 0
while pos < len(data):
    head = data[pos:pos + 8]
    n = struct.unpack("<Q", head)[0]
    assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc(head), "length crc"
    body = data[pos + 12:pos + 12 + n]
    assert len(body) == n, "truncated"
    assert struct.unpack("<I", data[pos + 12 + n:pos + 16 + n])[0] == masked_crc(body), "data crc"
    pos += 16 + n
    count += 1
    wall, step = 0.0, 0
    for f, w, v in fields(body):
        if f == 1 and w == 1:
            wall = dbl(v)
        elif f == 2 and w == 0:
            step = v - (1 << 64) if v >= (1 << 63) else v
        elif f == 3 and w == 2:
            print("V\t%r\t%s" % (wall, v.decode()))
        elif f == 5 and w == 2:
            for sf, sw, sv in fields(v):
                tag, out = "", None
                for vf, vw, vv in fields(sv):
                    if vf == 1:
                        tag = vv.decode()
                    elif vf == 2:
                        out = "S\t%d\t%s\t%r" % (step, "%s", struct.unpack("<f", vv)[0])
                    elif vf == 5:
                        h = {}
                        for hf, hw, hv in fields(vv):
                            h[hf] = dbls(hv) if hf >= 6 else repr(dbl(hv))
                        out = "H\t%d\t%s\t" % (step, "%s") + "\t".join(h[k] for k in range(1, 8))
                print(out % tag)
print("N\t%d" % count)
)PY";

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<double> parse_doubles(const std::string& csv) {
  std::vector<double> out;
  for (const std::string& s : split(csv, ',')) out.push_back(std::strtod(s.c_str(), nullptr));
  return out;
}

TEST_F(TbEvents, IndependentPythonReaderAgrees) {
  if (std::system("command -v python3 >/dev/null 2>&1") != 0) GTEST_SKIP() << "python3 not installed";
  std::string path;
  std::vector<double> samples;
  for (int i = 0; i < 50; ++i) samples.push_back(std::sin(i) * 100.0);
  const std::vector<double> limits = {0.5, 1.5, 2.5};
  const std::vector<double> counts = {7, 0, 3};
  {
    EventWriter w(dir_.string());
    w.scalar("loss", 1, 3.14159);
    w.scalar("grad norm", -5, 1e-7);
    w.scalar("lr", 123456789012345LL, 0.1);
    w.histogram_counts("expert_frequency/layer_1", 8, limits, counts, 0, 2, 6, 12);
    w.histogram("acts", 9, samples);
    path = w.path();
  }
  const std::string cmd = "python3 -c " + shell_quote(kPythonReader) + " " + shell_quote(path);
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;

  const std::vector<std::string> lines = split(out, '\n');
  ASSERT_EQ(lines.size(), 7u) << out;
  std::vector<std::vector<std::string>> rows;
  for (const std::string& l : lines) rows.push_back(split(l, '\t'));
  ASSERT_EQ(rows[0].size(), 3u);
  EXPECT_EQ(rows[0][0], "V");
  EXPECT_NEAR(std::strtod(rows[0][1].c_str(), nullptr), now_seconds(), 60.0);
  EXPECT_EQ(rows[0][2], "brain.Event:2");

  const std::vector<std::vector<std::string>> scalars = {
      {"S", "1", "loss"}, {"S", "-5", "grad norm"}, {"S", "123456789012345", "lr"}};
  const float values[] = {3.14159f, 1e-7f, 0.1f};
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(rows[i + 1].size(), 4u) << lines[i + 1];
    EXPECT_EQ(std::vector<std::string>(rows[i + 1].begin(), rows[i + 1].begin() + 3), scalars[i]);
    EXPECT_EQ(std::strtod(rows[i + 1][3].c_str(), nullptr), static_cast<double>(values[i])) << lines[i + 1];
  }

  const std::vector<std::string>& h = rows[4];
  ASSERT_EQ(h.size(), 10u) << lines[4];
  EXPECT_EQ(h[0], "H");
  EXPECT_EQ(h[1], "8");
  EXPECT_EQ(h[2], "expert_frequency/layer_1");
  EXPECT_EQ(std::vector<std::string>(h.begin() + 3, h.begin() + 8),
            (std::vector<std::string>{"0.0", "2.0", "10.0", "6.0", "12.0"}));
  EXPECT_EQ(parse_doubles(h[8]), limits);
  EXPECT_EQ(parse_doubles(h[9]), counts);

  const std::vector<std::string>& r = rows[5];
  ASSERT_EQ(r.size(), 10u) << lines[5];
  EXPECT_EQ(r[1], "9");
  EXPECT_EQ(r[2], "acts");
  double mn = samples[0], mx = samples[0], sum = 0, sq = 0;
  for (double v : samples) {
    mn = std::min(mn, v);
    mx = std::max(mx, v);
    sum += v;
    sq += v * v;
  }
  EXPECT_EQ(std::strtod(r[3].c_str(), nullptr), mn);
  EXPECT_EQ(std::strtod(r[4].c_str(), nullptr), mx);
  EXPECT_EQ(std::strtod(r[5].c_str(), nullptr), 50.0);
  EXPECT_EQ(std::strtod(r[6].c_str(), nullptr), sum);
  EXPECT_EQ(std::strtod(r[7].c_str(), nullptr), sq);
  const std::vector<double> lim = parse_doubles(r[8]), cnt = parse_doubles(r[9]);
  ASSERT_EQ(lim.size(), cnt.size());
  for (size_t i = 0; i < lim.size(); ++i) {
    const double lo = i == 0 ? -INFINITY : lim[i - 1];
    double want = 0;
    for (double v : samples) want += (v >= lo && v < lim[i]) ? 1 : 0;
    EXPECT_EQ(cnt[i], want) << "bucket " << i;
  }
  EXPECT_EQ(rows[6], (std::vector<std::string>{"N", "6"}));
}

}  // namespace
}  // namespace moe::train
