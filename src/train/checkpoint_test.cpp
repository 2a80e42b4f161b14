#include "train/checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "testdata.h"
#include "train/tb_events.h"

namespace moe::train {
namespace {

namespace fs = std::filesystem;

std::string slurp(const std::string& path) { return test::read_file(path); }

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(bytes.size()));
}

Checkpoint sample() {
  Checkpoint c;
  c.arrays["param/blk.0.attn_q.weight"] = {1.0f, -2.5f, 3e-38f, std::numeric_limits<float>::infinity()};
  c.arrays["adam/m"] = std::vector<float>(1000, 0.25f);
  c.arrays["empty"] = {};
  c.texts["state"] = R"({"step": 42, "rng": [1, 2, 3]})";
  c.texts["binary"] = std::string("a\0b\xff", 4);
  c.texts[""] = "";  // empty names and payloads are legal
  return c;
}

void expect_same(const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.arrays.size(), b.arrays.size());
  for (const auto& [k, v] : a.arrays) {
    ASSERT_TRUE(b.arrays.count(k)) << k;
    const auto& w = b.arrays.at(k);
    ASSERT_EQ(v.size(), w.size()) << k;
    if (!v.empty()) {
      EXPECT_EQ(std::memcmp(v.data(), w.data(), v.size() * sizeof(float)), 0) << k;
    }
  }
  EXPECT_EQ(a.texts, b.texts);
}

// The bytes of a checkpoint body (everything before the checksum), for hand-made malformed files.
struct Bytes {
  std::string s;
  template <class T>
  Bytes& pod(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  Bytes& raw(const std::string& r) {
    s += r;
    return *this;
  }
  std::string with_crc() const {
    std::string out = s;
    const uint32_t c = crc32c(s.data(), s.size());
    out.append(reinterpret_cast<const char*>(&c), 4);
    return out;
  }
};

Bytes header(uint64_t count) {
  Bytes b;
  b.raw("MOECKPT1").pod<uint32_t>(1).pod<uint64_t>(count);
  return b;
}

TEST(TrainCheckpoint, Crc32cExtends) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // RFC 3720 check value
  EXPECT_EQ(crc32c_extend(crc32c("1234", 4), "56789", 5), 0xE3069283u);
  EXPECT_EQ(crc32c_extend(0, "123456789", 9), 0xE3069283u);
  std::string big(100003, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + (i >> 7));
  EXPECT_EQ(crc32c_extend(crc32c(big.data(), 777), big.data() + 777, big.size() - 777),
            crc32c(big.data(), big.size()));
}

TEST(TrainCheckpoint, RoundTrip) {
  const std::string dir = test::temp_dir("ckpt-rt");
  const std::string path = checkpoint_path(dir, 42);
  EXPECT_EQ(fs::path(path).filename(), "step_00000042.ckpt");
  const Checkpoint c = sample();
  save_checkpoint(c, path);
  expect_same(c, load_checkpoint(path));
  // Saving over an existing checkpoint replaces it.
  Checkpoint c2;
  c2.texts["state"] = "{}";
  save_checkpoint(c2, path);
  expect_same(c2, load_checkpoint(path));
  save_checkpoint(Checkpoint{}, path);
  expect_same(Checkpoint{}, load_checkpoint(path));
  // No temp file is left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}

TEST(TrainCheckpoint, CorruptByteNamesChecksum) {
  const std::string dir = test::temp_dir("ckpt-corrupt");
  const std::string path = dir + "/c.ckpt";
  save_checkpoint(sample(), path);
  const std::string good = slurp(path);
  // Every byte position, one at a time (the file is small): always an error, and one about the checksum
  // (or the magic, for the first 8 bytes, which are checked first).
  for (size_t i = 0; i < good.size(); i += (i < 64 ? 1 : 97)) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    spit(path, bad);
    const std::string e = test::error_of([&] { load_checkpoint(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_TRUE(e.find(i < 8 ? "magic" : "checksum") != std::string::npos) << "byte " << i << ": " << e;
  }
  fs::remove_all(dir);
}

TEST(TrainCheckpoint, TruncatedFileIsAnError) {
  const std::string dir = test::temp_dir("ckpt-trunc");
  const std::string path = dir + "/c.ckpt";
  save_checkpoint(sample(), path);
  const std::string good = slurp(path);
  for (size_t len : {size_t{0}, size_t{5}, size_t{8}, size_t{23}, size_t{24}, size_t{100}, good.size() / 2,
                     good.size() - 4, good.size() - 1}) {
    spit(path, good.substr(0, len));
    const std::string e = test::error_of([&] { load_checkpoint(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_TRUE(e.find("truncated") != std::string::npos || e.find("checksum") != std::string::npos)
        << len << ": " << e;
  }
  // Extra bytes at the end are an error too.
  spit(path, good + "x");
  EXPECT_NE(test::error_of([&] { load_checkpoint(path); }), "");
  EXPECT_NE(test::error_of([&] { load_checkpoint(dir + "/missing.ckpt"); }).find("missing.ckpt"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { load_checkpoint(dir); }).find("not a regular file"), std::string::npos);
  fs::remove_all(dir);
}

// Files with a valid checksum but hostile structure: each is rejected with the defect named.
TEST(TrainCheckpoint, HostileStructure) {
  const std::string dir = test::temp_dir("ckpt-hostile");
  const std::string path = dir + "/h.ckpt";
  auto error_for = [&](const Bytes& b) {
    spit(path, b.with_crc());
    return test::error_of([&] { load_checkpoint(path); });
  };
  auto expect_error = [&](const Bytes& b, const std::string& needle) {
    const std::string e = error_for(b);
    EXPECT_NE(e.find(needle), std::string::npos) << "want '" << needle << "', got: " << e;
  };
  Bytes v2;
  v2.raw("MOECKPT1").pod<uint32_t>(2).pod<uint64_t>(0);
  expect_error(v2, "version 2");
  expect_error(header(~uint64_t{0}), "sections cannot fit");
  expect_error(header(1), "sections cannot fit");
  expect_error(header(1).pod<uint32_t>(0xFFFFFFFFu).raw(std::string(20, 'x')), "oversized name");
  expect_error(header(1).pod<uint32_t>(4000).raw(std::string(20, 'x')), "truncated or malformed");
  expect_error(header(1).pod<uint32_t>(1).raw("a").pod<uint8_t>(7).pod<uint64_t>(0), "unknown kind 7");
  expect_error(header(1).pod<uint32_t>(1).raw("a").pod<uint8_t>(0).pod<uint64_t>(~uint64_t{0}), "oversized");
  expect_error(header(1).pod<uint32_t>(1).raw("a").pod<uint8_t>(0).pod<uint64_t>(1ull << 40).raw("abcd"),
               "oversized");
  expect_error(header(1).pod<uint32_t>(1).raw("a").pod<uint8_t>(0).pod<uint64_t>(3).raw("abc"),
               "not a multiple of 4");
  expect_error(header(2)
                   .pod<uint32_t>(1)
                   .raw("a")
                   .pod<uint8_t>(1)
                   .pod<uint64_t>(1)
                   .raw("x")
                   .pod<uint32_t>(1)
                   .raw("a")
                   .pod<uint8_t>(1)
                   .pod<uint64_t>(1)
                   .raw("y"),
               "duplicate");
  expect_error(header(0).raw("junk"), "unexpected bytes");
  // A valid hand-made file loads (the format is as documented in checkpoint.h).
  spit(path,
       header(1).pod<uint32_t>(2).raw("xy").pod<uint8_t>(0).pod<uint64_t>(4).pod<float>(1.5f).with_crc());
  const Checkpoint c = load_checkpoint(path);
  ASSERT_EQ(c.arrays.count("xy"), 1u);
  EXPECT_EQ(c.arrays.at("xy"), std::vector<float>{1.5f});

  // Random mutations with a recomputed checksum: an error or a result, never a crash (run under ASan).
  save_checkpoint(sample(), path);
  const std::string good = slurp(path);
  std::mt19937 rng(11);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string body = good.substr(0, good.size() - 4);
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0:
          body[at] = static_cast<char>(rng());
          break;
        case 1:
          body.resize(at);
          break;
        default:
          body.insert(at, 1 + rng() % 9, static_cast<char>(rng() % 2 ? 0xff : 0));
          break;
      }
      if (body.empty()) body = "M";
    }
    Bytes b;
    b.s = body;
    spit(path, b.with_crc());
    try {
      load_checkpoint(path);
    } catch (const Error&) {
    }
  }
  fs::remove_all(dir);
}

TEST(TrainCheckpoint, ListAndPrune) {
  const std::string dir = test::temp_dir("ckpt-list");
  EXPECT_TRUE(list_checkpoints(dir + "/nope").empty());
  for (int64_t s : {3, 1, 10, 2, 123456789}) save_checkpoint(sample(), checkpoint_path(dir, s));
  // Names that are not complete checkpoints.
  spit(dir + "/.step_00000005.ckpt.tmp.99999999.0", "partial");  // a temp file of a live-looking writer
  spit(dir + "/step_00000006.ckpt.tmp", "x");
  spit(dir + "/step_7.ckpt", "x");          // not the canonical spelling
  spit(dir + "/step_000000008.ckpt", "x");  // neither
  spit(dir + "/step_0000000x.ckpt", "x");
  spit(dir + "/notes.txt", "x");
  fs::create_directory(dir + "/step_00000009.ckpt");  // a directory
  EXPECT_EQ(list_checkpoints(dir), (std::vector<int64_t>{1, 2, 3, 10, 123456789}));
  prune_checkpoints(dir, 0);  // keep all
  EXPECT_EQ(list_checkpoints(dir), (std::vector<int64_t>{1, 2, 3, 10, 123456789}));
  prune_checkpoints(dir, 2);
  EXPECT_EQ(list_checkpoints(dir), (std::vector<int64_t>{10, 123456789}));
  EXPECT_FALSE(fs::exists(checkpoint_path(dir, 3)));
  expect_same(sample(), load_checkpoint(checkpoint_path(dir, 10)));
  prune_checkpoints(dir, 5);
  EXPECT_EQ(list_checkpoints(dir), (std::vector<int64_t>{10, 123456789}));
  prune_checkpoints(dir, 1);
  EXPECT_EQ(list_checkpoints(dir), (std::vector<int64_t>{123456789}));
  EXPECT_TRUE(fs::exists(dir + "/notes.txt"));  // other files are never touched
  fs::remove_all(dir);
}

TEST(TrainCheckpoint, SaveErrorsNameThePath) {
  const std::string dir = test::temp_dir("ckpt-err");
  const std::string e = test::error_of([&] { save_checkpoint(sample(), dir + "/no/such/dir/c.ckpt"); });
  EXPECT_NE(e.find(dir + "/no/such/dir/c.ckpt"), std::string::npos) << e;
  // Renaming over a directory fails after the data is written: the temp file must be gone.
  fs::create_directory(dir + "/d.ckpt");
  fs::create_directory(dir + "/d.ckpt/x");
  EXPECT_NE(test::error_of([&] { save_checkpoint(sample(), dir + "/d.ckpt"); }).find("d.ckpt"),
            std::string::npos);
  int entries = 0;
  for (const auto& e2 : fs::directory_iterator(dir)) entries += 1 + 0 * e2.is_regular_file();
  EXPECT_EQ(entries, 1);  // only d.ckpt
  fs::remove_all(dir);
}

// kill -9 at a random moment of a save over an existing checkpoint: the file at path is always a whole
// checkpoint (the old one or a new one), and leftover temp files never count as checkpoints.
TEST(TrainCheckpoint, AtomicUnderKill9) {
  const std::string dir = test::temp_dir("ckpt-kill");
  const std::string path = checkpoint_path(dir, 7);
  const size_t n = (200u << 20) / sizeof(float);  // 200 MB of f32
  auto make = [&](int gen) {
    Checkpoint c;
    c.arrays["params"].assign(n, static_cast<float>(gen));
    c.texts["state"] = std::to_string(gen);
    return c;
  };
  auto t0 = std::chrono::steady_clock::now();
  save_checkpoint(make(0), path);
  const double save_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(std::random_device{}());
  int loaded = 0;  // the generation at path after the previous trial
  int temps_seen = 0;
  for (int trial = 1; trial <= 4; ++trial) {
    // Child `trial` writes generations trial * 1e6 + 1, + 2, ...: any other value would be foreign.
    const int first_gen = trial * 1'000'000 + 1;
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        Checkpoint c = make(first_gen);
        for (int gen = first_gen;; ++gen) {
          std::fill(c.arrays["params"].begin(), c.arrays["params"].end(), static_cast<float>(gen));
          c.texts["state"] = std::to_string(gen);
          save_checkpoint(c, path);
        }
      } catch (...) {
        _exit(1);
      }
    }
    // Kill somewhere in the first few saves (each takes about save_s).
    const double wait_s = std::uniform_real_distribution<double>(0.05, 2.5)(rng) * save_s;
    std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the saving child exited by itself (status " << status << ")";

    const Checkpoint got = load_checkpoint(path);  // must not throw
    ASSERT_EQ(got.texts.count("state"), 1u);
    const int gen = std::stoi(got.texts.at("state"));
    EXPECT_TRUE(gen == loaded || (gen >= first_gen && gen < first_gen + 1'000'000))
        << "generation " << gen << " after " << loaded;
    const std::vector<float>& p = got.arrays.at("params");
    ASSERT_EQ(p.size(), n);
    const float want = static_cast<float>(gen);
    EXPECT_TRUE(std::all_of(p.begin(), p.end(), [&](float x) { return x == want; })) << "torn checkpoint";
    EXPECT_EQ(list_checkpoints(dir), std::vector<int64_t>{7});
    for (const auto& e : fs::directory_iterator(dir))
      temps_seen += e.path().filename() != "step_00000007.ckpt";
    loaded = gen;
  }
  std::printf("kill -9 trials: %.2f s per save, %d leftover temp files seen\n", save_s, temps_seen);
  // The dead children's temp files are swept by prune; the checkpoint stays.
  prune_checkpoints(dir, 3);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  EXPECT_EQ(list_checkpoints(dir), std::vector<int64_t>{7});
  fs::remove_all(dir);
}

}  // namespace
}  // namespace moe::train
