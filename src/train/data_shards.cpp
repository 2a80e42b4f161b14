// Reading token shards back: header validation and deterministic training windows.
#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "train/data.h"

namespace moe::train {

namespace {

uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
         static_cast<uint32_t>(p[3]) << 24;
}

uint64_t get_u64(const uint8_t* p) { return get_u32(p) | static_cast<uint64_t>(get_u32(p + 4)) << 32; }

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A keyed bijection of [0, n): a four-round Feistel network on the smallest even number of bits
// that covers n, cycle-walking past values >= n (fewer than four steps on average).
uint64_t permute(uint64_t x, uint64_t n, uint64_t key) {
  if (n <= 1) return 0;
  const int bits = 64 - __builtin_clzll(n - 1);
  const int half = (bits + 1) / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  uint64_t round_keys[4];
  for (int r = 0; r < 4; ++r) round_keys[r] = mix64(key + static_cast<uint64_t>(r) * 0xA24BAED4963EE407ull);
  do {
    uint64_t l = x >> half, r = x & mask;
    for (uint64_t k : round_keys) {
      const uint64_t next = l ^ (mix64(r ^ k) & mask);
      l = r;
      r = next;
    }
    x = (l << half) | r;
  } while (x >= n);
  return x;
}

bool plain_file_name(const std::string& s) {
  if (s.empty() || s[0] == '.') return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  return true;
}

}  // namespace

ShardHeader parse_shard_header(const uint8_t* data, size_t size, const std::string& path) {
  MOE_CHECK(size >= kShardHeaderBytes, path, ": truncated token shard: ", size, " bytes, less than the ",
            kShardHeaderBytes, "-byte header");
  MOE_CHECK(std::memcmp(data, kShardMagic, 8) == 0, path,
            ": not a token shard (bad magic; expected MOETOK01)");
  ShardHeader h;
  h.version = get_u32(data + 8);
  h.vocab_size = get_u32(data + 12);
  h.token_bytes = get_u32(data + 16);
  h.n_tokens = get_u64(data + 24);
  MOE_CHECK(h.version == kShardVersion, path, ": unsupported token shard version ", h.version, " (expected ",
            kShardVersion, ")");
  MOE_CHECK(h.vocab_size > 0, path, ": token shard header has vocabulary size 0");
  MOE_CHECK(h.token_bytes == (h.vocab_size <= 65536 ? 2u : 4u), path, ": token width ", h.token_bytes,
            " bytes does not fit vocabulary size ", h.vocab_size);
  const uint64_t payload = size - kShardHeaderBytes;
  MOE_CHECK(h.n_tokens <= payload / h.token_bytes, path, ": truncated token shard: the header says ",
            h.n_tokens, " tokens but the file holds ", payload / h.token_bytes);
  MOE_CHECK(h.n_tokens * h.token_bytes == payload, path, ": token shard has ",
            payload - h.n_tokens * h.token_bytes, " bytes past its ", h.n_tokens, " tokens");
  return h;
}

TokenShards::TokenShards(const std::string& dir, const std::string& split) : split_(split) {
  MOE_CHECK(split == "train" || split == "val", "token shards: split must be train or val, not '", split,
            "'");
  const std::string manifest_path = (std::filesystem::path(dir) / "manifest.json").string();
  std::ifstream f(manifest_path, std::ios::binary);
  MOE_CHECK(f, manifest_path, ": cannot read (is ", dir, " the output of `moe data prepare`?)");
  std::ostringstream ss;
  ss << f.rdbuf();
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(ss.str());
    const uint64_t vocab = m.at("tokenizer").at("vocab_size").get<uint64_t>();
    MOE_CHECK(vocab > 0 && vocab <= UINT32_MAX, manifest_path, ": tokenizer.vocab_size out of range");
    vocab_size_ = static_cast<uint32_t>(vocab);
    for (const nlohmann::json& s : m.at(split).at("shards")) {
      const std::string name = s.at("file").get<std::string>();
      MOE_CHECK(plain_file_name(name), manifest_path, ": shard file '", name, "' is not a plain file name");
      const int64_t n = s.at("n_tokens").get<int64_t>();
      Shard shard;
      shard.file = std::make_unique<MappedFile>((std::filesystem::path(dir) / name).string());
      const std::string& path = shard.file->path();
      const ShardHeader h = parse_shard_header(shard.file->data(), shard.file->size(), path);
      MOE_CHECK(h.vocab_size == vocab_size_, path, ": vocabulary size ", h.vocab_size,
                " differs from the manifest's ", vocab_size_);
      MOE_CHECK(static_cast<int64_t>(h.n_tokens) == n, path, ": holds ", h.n_tokens,
                " tokens, the manifest says ", n);
      shard.begin = n_tokens_;
      shard.n_tokens = n;
      shard.token_bytes = h.token_bytes;
      n_tokens_ += n;
      shards_.push_back(std::move(shard));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(manifest_path, ": malformed manifest: ", e.what());
  }
}

TokenShards::~TokenShards() = default;

int64_t TokenShards::n_windows(int64_t seq_len) const {
  MOE_CHECK(seq_len >= 1, "token shards: seq_len must be >= 1");
  return n_tokens_ > 0 ? (n_tokens_ - 1) / seq_len : 0;
}

void TokenShards::read(int64_t offset, int64_t count, int32_t* out) const {
  MOE_CHECK(offset >= 0 && count >= 0 && count <= n_tokens_ - offset, split_, " split: tokens [", offset,
            ", ", offset + count, ") are outside its ", n_tokens_);
  // The last shard that begins at or before offset holds it.
  size_t idx =
      static_cast<size_t>(std::upper_bound(shards_.begin(), shards_.end(), offset,
                                           [](int64_t off, const Shard& s) { return off < s.begin; }) -
                          shards_.begin()) -
      1;
  for (; count > 0; ++idx) {
    const Shard& s = shards_[idx];
    const int64_t local = offset - s.begin;
    const int64_t n = std::min(count, s.n_tokens - local);
    const uint8_t* p = s.file->data() + kShardHeaderBytes + local * s.token_bytes;
    for (int64_t k = 0; k < n; ++k, p += s.token_bytes) {
      const uint32_t t = s.token_bytes == 2 ? static_cast<uint32_t>(p[0] | p[1] << 8) : get_u32(p);
      MOE_CHECK(t < vocab_size_, s.file->path(), ": token ", local + k, " is ", t,
                ", outside the vocabulary of ", vocab_size_);
      out[k] = static_cast<int32_t>(t);
    }
    out += n;
    offset += n;
    count -= n;
  }
}

void TokenShards::batch(uint64_t seed, int64_t step, int64_t batch, int64_t seq_len,
                        std::vector<int32_t>* out) const {
  MOE_CHECK(batch >= 1 && step >= 0, "token shards: batch must be >= 1 and step >= 0");
  const int64_t nw = n_windows(seq_len);
  MOE_CHECK(nw >= 1, split_, " split: ", n_tokens_,
            " tokens are fewer than one window of seq_len + 1 = ", seq_len + 1);
  MOE_CHECK(step <= INT64_MAX / batch - 1, "token shards: step ", step, " is out of range");
  out->resize(static_cast<size_t>(batch * (seq_len + 1)));
  for (int64_t b = 0; b < batch; ++b) {
    const uint64_t i = static_cast<uint64_t>(step * batch + b);
    const uint64_t epoch = i / static_cast<uint64_t>(nw);
    const uint64_t w =
        permute(i % static_cast<uint64_t>(nw), static_cast<uint64_t>(nw), mix64(seed ^ mix64(epoch)));
    read(static_cast<int64_t>(w) * seq_len, seq_len + 1, out->data() + b * (seq_len + 1));
  }
}

}  // namespace moe::train
