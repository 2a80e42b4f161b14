#include "tokenizer/bpe_train.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace moe {

using nlohmann::ordered_json;

namespace {

// Byte for byte the "pre_tokenizer" of DeepSeek-V3's tokenizer.json (the CJK class as \u escapes:
// U+4E00-U+9FA5, U+3040-U+309F, U+30A0-U+30FF).
constexpr const char* kDeepseekV3PreTokenizer = R"({"type": "Sequence", "pretokenizers": [
  {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
  {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false},
  {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})";

// Text is counted in pieces of about this size, one thread per piece.
constexpr size_t kPieceBytes = size_t{1} << 20;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Whether text can be cut at p without changing how it pre-tokenizes: right after a line feed
// and before printable ASCII. No Split regex of DeepSeek-V3 matches across such a point (the
// letter runs exclude \r\n before them, the whitespace runs end before non-space, the
// punctuation runs end in [\r\n]*), and no digit run or CJK run contains it.
bool cuttable(std::string_view s, size_t p) {
  if (p == 0 || p >= s.size() || s[p - 1] != '\n') return false;
  const auto c = static_cast<unsigned char>(s[p]);
  return c >= 0x21 && c <= 0x7E;
}
// The last such point of s, or 0.
size_t last_cut(std::string_view s) {
  for (size_t p = s.size(); p-- > 1;)
    if (cuttable(s, p)) return p;
  return 0;
}
// s cut into pieces of about kPieceBytes at such points.
std::vector<std::string_view> pieces_of(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    size_t end = s.size();
    for (size_t p = kPieceBytes; p < s.size(); ++p) {
      if (cuttable(s, p)) {
        end = p;
        break;
      }
    }
    out.push_back(s.substr(0, end));
    s.remove_prefix(end);
  }
  return out;
}

PreTokenizer make_deepseek_v3_pre_tokenizer() {
  const ordered_json j = ordered_json::parse(kDeepseekV3PreTokenizer);
  PreTokenizer pre;
  for (const auto& step : j["pretokenizers"]) {
    if (step["type"] != "Split") continue;  // ByteLevel without regex or prefix space splits nothing
    pre.add_split(step["pattern"]["Regex"].get<std::string>(), Regex::Dialect::kOniguruma,
                  split_behavior_from_name(step["behavior"].get<std::string>()), step["invert"].get<bool>());
  }
  return pre;
}

using PairKey = uint64_t;
PairKey pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b); }
int32_t pair_left(PairKey k) { return static_cast<int32_t>(k >> 32); }
int32_t pair_right(PairKey k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> syms;
  int64_t count = 0;
};

struct HeapEntry {
  int64_t count;
  PairKey pair;
};

using WordCounts = std::unordered_map<std::string, int64_t, StringViewHash, std::equal_to<>>;

// What one counting thread gathers.
struct Shard {
  WordCounts counts;
  uint64_t bytes = 0;
  uint64_t words = 0;
};

}  // namespace

struct BpeTrainer::Impl {
  PreTokenizer pre = make_deepseek_v3_pre_tokenizer();
  std::vector<std::string> specials;
  int threads = 1;
  WordCounts word_counts;

  void count_piece(std::string_view piece, Shard& shard) const;
  // Counts pieces in parallel into word_counts.
  void count_pieces(const std::vector<std::string_view>& pieces, BpeTrainStats& stats);
};

void BpeTrainer::Impl::count_piece(std::string_view piece, Shard& shard) const {
  std::string repaired;
  piece = sanitize_utf8(piece, &repaired);
  shard.bytes += piece.size();
  const auto count_text = [&](std::string_view text) {
    pre.split(text, [&](std::string_view w) {
      ++shard.words;
      if (const auto it = shard.counts.find(w); it != shard.counts.end()) {
        ++it->second;
      } else {
        shard.counts.emplace(std::string(w), 1);
      }
    });
  };
  // Special tokens are matched before pre-tokenization (leftmost, then longest), as encoding does.
  if (specials.empty()) return count_text(piece);
  std::vector<size_t> next(specials.size());
  for (size_t i = 0; i < specials.size(); ++i) next[i] = piece.find(specials[i]);
  size_t pos = 0;
  while (pos < piece.size()) {
    size_t best = std::string_view::npos, best_len = 0;
    for (size_t i = 0; i < specials.size(); ++i) {
      if (next[i] != std::string_view::npos && next[i] < pos) next[i] = piece.find(specials[i], pos);
      if (next[i] == std::string_view::npos) continue;
      if (next[i] < best || (next[i] == best && specials[i].size() > best_len)) {
        best = next[i];
        best_len = specials[i].size();
      }
    }
    if (best == std::string_view::npos) break;
    count_text(piece.substr(pos, best - pos));
    pos = best + best_len;
  }
  if (pos < piece.size()) count_text(piece.substr(pos));
}

void BpeTrainer::Impl::count_pieces(const std::vector<std::string_view>& pieces, BpeTrainStats& stats) {
  const size_t n_threads = std::min<size_t>(static_cast<size_t>(threads), pieces.size());
  std::vector<Shard> shards(std::max<size_t>(n_threads, 1));
  std::vector<std::exception_ptr> errors(shards.size());
  std::atomic<size_t> next{0};
  const auto work = [&](size_t t) {
    try {
      for (size_t i; (i = next.fetch_add(1)) < pieces.size();) count_piece(pieces[i], shards[t]);
    } catch (...) {
      errors[t] = std::current_exception();
    }
  };
  std::vector<std::thread> helpers;
  for (size_t t = 1; t < n_threads; ++t) helpers.emplace_back(work, t);
  work(0);
  for (std::thread& h : helpers) h.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  for (Shard& sh : shards) {
    stats.bytes += sh.bytes;
    stats.words += sh.words;
    if (word_counts.empty()) {
      word_counts = std::move(sh.counts);
      continue;
    }
    for (auto& [w, c] : sh.counts) word_counts[w] += c;
  }
  stats.unique_words = word_counts.size();
}

const std::string& deepseek_v3_pre_tokenizer_json() {
  static const std::string text = ordered_json::parse(kDeepseekV3PreTokenizer).dump();
  return text;
}

BpeTrainer::BpeTrainer(BpeTrainOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->specials = options_.specials;
  const unsigned hw = std::thread::hardware_concurrency();
  impl_->threads = options_.threads > 0 ? options_.threads : static_cast<int>(std::clamp(hw, 1u, 8u));
  const auto n_special = static_cast<int64_t>(options_.specials.size());
  MOE_CHECK(options_.vocab_size >= 256 + n_special, "vocab size ", options_.vocab_size,
            " is too small: the 256 byte symbols and ", n_special, " special token(s) need ",
            256 + n_special);
  MOE_CHECK(options_.min_frequency >= 1, "min frequency must be at least 1 (got ", options_.min_frequency,
            ")");
  std::unordered_set<std::string> seen;
  for (const std::string& s : options_.specials) {
    MOE_CHECK(!s.empty(), "special token texts must not be empty");
    MOE_CHECK(is_valid_utf8(s), "special token '", s, "' is not valid UTF-8");
    MOE_CHECK(seen.insert(s).second, "special token '", s, "' is given twice");
    for (int b = 0; b < 256; ++b)
      MOE_CHECK(s != byte_to_utf8(static_cast<uint8_t>(b)), "special token '", s,
                "' is the byte-level text of byte ", b, ", which must stay a byte symbol");
  }
}

BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) {
  const auto t0 = Clock::now();
  impl_->count_pieces(pieces_of(text), stats_);
  stats_.count_seconds += seconds_since(t0);
}

void BpeTrainer::add_file(const std::string& path) {
  const auto t0 = Clock::now();
  std::FILE* f = std::fopen(path.c_str(), "rb");
  MOE_CHECK(f != nullptr, path, ": cannot open (", std::strerror(errno), ")");
  const size_t batch = kPieceBytes * static_cast<size_t>(impl_->threads);
  std::string buf;
  std::vector<char> block(kPieceBytes);
  bool ok = true;
  int read_errno = 0;
  try {
    for (;;) {
      const size_t n = std::fread(block.data(), 1, block.size(), f);
      if (n == 0) {
        ok = !std::ferror(f);
        read_errno = errno;
        break;
      }
      buf.append(block.data(), n);
      if (buf.size() < batch) continue;
      const size_t cut = last_cut(buf);
      if (cut == 0) continue;  // one long line so far: keep reading
      impl_->count_pieces(pieces_of(std::string_view(buf).substr(0, cut)), stats_);
      buf.erase(0, cut);
    }
    if (ok) impl_->count_pieces(pieces_of(buf), stats_);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  MOE_CHECK(ok, path, ": read error (", std::strerror(read_errno), ")");
  stats_.count_seconds += seconds_since(t0);
}

BpeModel BpeTrainer::train() const {
  const auto t0 = Clock::now();
  BpeModel model;
  model.n_special = static_cast<int32_t>(options_.specials.size());
  std::vector<std::string>& texts = model.vocab;
  TokenIdMap ids;
  for (const std::string& s : options_.specials) {
    ids.emplace(s, static_cast<int32_t>(texts.size()));
    texts.push_back(s);
  }
  const auto first_byte = static_cast<int32_t>(texts.size());
  for (int b = 0; b < 256; ++b) {
    texts.emplace_back(byte_to_utf8(static_cast<uint8_t>(b)));
    ids.emplace(texts.back(), static_cast<int32_t>(texts.size() - 1));
  }

  // Words in byte order, so that everything below runs in the same order on every run.
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(impl_->word_counts.size());
  for (const auto& [w, c] : impl_->word_counts)
    if (w.size() > 1) sorted.emplace_back(w, c);  // a single byte has no pair to merge
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words(sorted.size());
  std::unordered_map<PairKey, int64_t> pair_counts;
  std::unordered_map<PairKey, std::vector<int32_t>> where;  // may list a word twice or stale
  for (size_t w = 0; w < sorted.size(); ++w) {
    Word& word = words[w];
    word.count = sorted[w].second;
    for (char c : sorted[w].first) word.syms.push_back(first_byte + static_cast<uint8_t>(c));
    for (size_t i = 0; i + 1 < word.syms.size(); ++i) {
      const PairKey k = pair_key(word.syms[i], word.syms[i + 1]);
      pair_counts[k] += word.count;
      auto& list = where[k];
      if (list.empty() || list.back() != static_cast<int32_t>(w)) list.push_back(static_cast<int32_t>(w));
    }
  }

  // Max-heap on count, then the smallest (left, right) texts; entries go stale as counts change
  // and are re-checked when they reach the top.
  const auto after = [&texts](const HeapEntry& x, const HeapEntry& y) {
    if (x.count != y.count) return x.count < y.count;
    const std::string& xl = texts[pair_left(x.pair)];
    const std::string& yl = texts[pair_left(y.pair)];
    if (xl != yl) return xl > yl;
    return texts[pair_right(x.pair)] > texts[pair_right(y.pair)];
  };
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, decltype(after)> heap(after);
  {
    std::vector<PairKey> keys;
    keys.reserve(pair_counts.size());
    for (const auto& [k, c] : pair_counts) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    for (PairKey k : keys) heap.push({pair_counts[k], k});
  }

  std::unordered_set<PairKey> forbidden;  // pairs that would spell a special token
  std::vector<int32_t> merged;
  std::vector<PairKey> touched;
  while (static_cast<int32_t>(texts.size()) < options_.vocab_size && !heap.empty()) {
    const HeapEntry top = heap.top();
    heap.pop();
    const auto it = pair_counts.find(top.pair);
    const int64_t current = it == pair_counts.end() ? 0 : it->second;
    if (current != top.count) {
      // Lower now: re-queue at its count. Higher: a newer entry is already queued.
      if (current > 0 && current < top.count) heap.push({current, top.pair});
      continue;
    }
    if (current < options_.min_frequency) break;
    if (forbidden.count(top.pair)) continue;
    const int32_t a = pair_left(top.pair), b = pair_right(top.pair);
    std::string text = texts[a] + texts[b];
    int32_t c;
    if (const auto found = ids.find(text); found != ids.end()) {
      if (found->second < model.n_special) {
        forbidden.insert(top.pair);
        continue;
      }
      c = found->second;
    } else {
      c = static_cast<int32_t>(texts.size());
      ids.emplace(text, c);
      texts.push_back(std::move(text));
    }
    model.merges.emplace_back(texts[a], texts[b]);

    const std::vector<int32_t> list = std::move(where[top.pair]);
    where.erase(top.pair);
    touched.clear();
    for (const int32_t w : list) {
      Word& word = words[w];
      std::vector<int32_t>& s = word.syms;
      bool present = false;
      for (size_t i = 0; i + 1 < s.size() && !present; ++i) present = s[i] == a && s[i + 1] == b;
      if (!present) continue;  // merged away earlier, or listed twice
      // Only the pairs around each occurrence change. The left neighbour is taken from the merged
      // output, so "a b a b" first adds (c, a) and then moves it to (c, c).
      const int64_t n = word.count;
      const auto add = [&](int32_t l, int32_t r, int64_t delta) {
        const PairKey k = pair_key(l, r);
        pair_counts[k] += delta;
        if (delta < 0) return;
        auto& wl = where[k];
        if (wl.empty() || wl.back() != w) wl.push_back(w);
        touched.push_back(k);
      };
      merged.clear();
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          if (!merged.empty()) {
            add(merged.back(), a, -n);
            add(merged.back(), c, n);
          }
          if (i + 2 < s.size()) {
            add(b, s[i + 2], -n);
            add(c, s[i + 2], n);
          }
          pair_counts[top.pair] -= n;
          merged.push_back(c);
          ++i;
        } else {
          merged.push_back(s[i]);
        }
      }
      s.assign(merged.begin(), merged.end());
    }
    // Every occurrence was merged; a count left over would mean a word missing from the index.
    if (pair_counts[top.pair] != 0) throw std::logic_error("BpeTrainer: pair index out of step with counts");
    pair_counts.erase(top.pair);
    // Only pairs next to the new symbol can have grown; queue them at their new counts.
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (PairKey k : touched) heap.push({pair_counts[k], k});
  }
  stats_.merge_seconds = seconds_since(t0);
  return model;
}

std::string bpe_tokenizer_json(const BpeModel& model) {
  ordered_json root;
  root["version"] = "1.0";
  root["truncation"] = nullptr;
  root["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (int32_t i = 0; i < model.n_special; ++i) {
    added.push_back({{"id", i},
                     {"content", model.vocab[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  root["added_tokens"] = std::move(added);
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = ordered_json::parse(kDeepseekV3PreTokenizer);
  // As DeepSeek-V3's: ByteLevel post-processing only adjusts offsets; no BOS is added.
  root["post_processor"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  root["decoder"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  ordered_json m;
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = nullptr;
  m["continuing_subword_prefix"] = nullptr;
  m["end_of_word_suffix"] = nullptr;
  m["fuse_unk"] = false;
  m["byte_fallback"] = false;
  m["ignore_merges"] = false;
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < model.vocab.size(); ++i) vocab[model.vocab[i]] = static_cast<int32_t>(i);
  m["vocab"] = std::move(vocab);
  ordered_json merges = ordered_json::array();
  // The classic "left right" form: byte-level texts never hold a space (it is "Ġ").
  for (const auto& [l, r] : model.merges) merges.push_back(l + " " + r);
  m["merges"] = std::move(merges);
  root["model"] = std::move(m);
  return root.dump(2) + "\n";
}

void write_bpe_tokenizer_json(const BpeModel& model, const std::string& path) {
  const std::string text = bpe_tokenizer_json(model);
  std::FILE* f = std::fopen(path.c_str(), "wb");
  MOE_CHECK(f != nullptr, path, ": cannot create (", std::strerror(errno), ")");
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  MOE_CHECK(ok && closed, path, ": write error");
}

}  // namespace moe
