#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/unicode.h"

namespace moe {

// (left id, right id) -> (rank, merged id), open addressing with linear probing.
struct BpeTokenizer::MergeTable {
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t result = 0;
  };
  static constexpr uint64_t kEmpty = ~0ull;  // ids are >= 0, so no real key has the top bit set
  std::vector<Slot> slots;
  uint64_t mask = 0;

  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  size_t home(uint64_t k) const {
    k ^= k >> 29;
    k *= 0xBF58476D1CE4E5B9ull;
    k ^= k >> 32;
    return static_cast<size_t>(k & mask);
  }
  explicit MergeTable(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    slots.resize(cap);
    mask = cap - 1;
  }
  // Inserts; an existing key is replaced only when overwrite.
  void insert(int32_t a, int32_t b, int32_t rank, int32_t result, bool overwrite) {
    const uint64_t k = key(a, b);
    for (size_t i = home(k);; i = (i + 1) & mask) {
      Slot& s = slots[i];
      if (s.key == kEmpty || s.key == k) {
        if (s.key == k && !overwrite) return;
        s = {k, rank, result};
        return;
      }
    }
  }
  const Slot* find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = home(k);; i = (i + 1) & mask) {
      const Slot& s = slots[i];
      if (s.key == k) return &s;
      if (s.key == kEmpty) return nullptr;
    }
  }
};

// Memoized BPE results per word: open addressing over flat arrays (a lookup touches one slot
// and one arena line, where std::unordered_map chases three pointers). Sharded by hash so that
// concurrent encode() calls rarely contend; a shard that fills up is cleared (cheap, and hot
// words come straight back).
struct BpeTokenizer::WordCache {
  static constexpr size_t kShards = 16;
  static constexpr size_t kSlots = 16384;       // per shard, power of two; at most half are used
  static constexpr size_t kMaxWordBytes = 256;  // longer words are rare; not worth the memory
  static constexpr size_t kMaxArena = 2 << 20;
  struct Slot {
    uint64_t hash = 0;    // 0: empty (real hashes have the low bit set)
    uint32_t offset = 0;  // into arena: the word, then its ids (4-byte aligned)
    uint16_t word_len = 0;
    uint16_t n_ids = 0;
  };
  struct Shard {
    std::mutex mu;
    std::vector<Slot> slots;  // kSlots once the first word goes in
    std::vector<char> arena;
    size_t used = 0;
  };
  std::array<Shard, kShards> shards;

  static uint64_t hash(std::string_view w) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ w.size();
    size_t i = 0;
    for (; i + 8 <= w.size(); i += 8) {
      uint64_t v;
      std::memcpy(&v, w.data() + i, 8);
      h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
    }
    uint64_t tail = 0;
    std::memcpy(&tail, w.data() + i, w.size() - i);
    h = (h ^ tail) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    return h | 1;
  }
  static size_t ids_offset(size_t offset, size_t word_len) { return (offset + word_len + 3) & ~size_t{3}; }

  bool get(std::string_view w, uint64_t h, std::vector<int32_t>* out) {
    Shard& s = shards[h >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.slots.empty()) return false;
    for (size_t i = (h >> 4) & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      const Slot& slot = s.slots[i];
      if (slot.hash == 0) return false;
      if (slot.hash == h && slot.word_len == w.size() &&
          std::memcmp(s.arena.data() + slot.offset, w.data(), w.size()) == 0) {
        const size_t at = out->size();
        out->resize(at + slot.n_ids);
        std::memcpy(out->data() + at, s.arena.data() + ids_offset(slot.offset, slot.word_len),
                    slot.n_ids * sizeof(int32_t));
        return true;
      }
    }
  }
  void put(std::string_view w, uint64_t h, const int32_t* ids, size_t n) {
    if (n > UINT16_MAX) return;
    Shard& s = shards[h >> 60];
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.slots.empty()) s.slots.resize(kSlots);
    if (s.used >= kSlots / 2 || s.arena.size() > kMaxArena) {
      std::fill(s.slots.begin(), s.slots.end(), Slot{});
      s.arena.clear();
      s.used = 0;
    }
    size_t i = (h >> 4) & (kSlots - 1);
    for (;; i = (i + 1) & (kSlots - 1)) {
      const Slot& slot = s.slots[i];
      if (slot.hash == 0) break;
      if (slot.hash == h && slot.word_len == w.size() &&
          std::memcmp(s.arena.data() + slot.offset, w.data(), w.size()) == 0)
        return;  // another thread got there first
    }
    const size_t offset = s.arena.size();
    const size_t at = ids_offset(offset, w.size());
    s.arena.resize(at + n * sizeof(int32_t));
    std::memcpy(s.arena.data() + offset, w.data(), w.size());
    std::memcpy(s.arena.data() + at, ids, n * sizeof(int32_t));
    s.slots[i] = {h, static_cast<uint32_t>(offset), static_cast<uint16_t>(w.size()),
                  static_cast<uint16_t>(n)};
    ++s.used;
  }
};

namespace {

// llama.cpp's llama_decode_text: byte-level text back to bytes; characters that stand for no
// byte come out as "[UNK_BYTE_0x<utf8 hex><text>]".
std::string llama_decode_text(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    const int b = code_point_to_byte(next_code_point(text, &pos));
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    out += "[UNK_BYTE_0x";
    for (size_t i = start; i < pos; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
    out.append(text);
    out += ']';
  }
  return out;
}

}  // namespace

BpeTokenizer::BpeTokenizer() : cache_(std::make_unique<WordCache>()) {}
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer::BpeTokenizer(const GgufFile& file) : BpeTokenizer() {
  const std::string model = file.get_string("tokenizer.ggml.model", "");
  MOE_CHECK(model == "gpt2", "tokenizer.ggml.model: '", model, "' is not a byte-level BPE (gpt2)");
  const std::string pre_name = file.get_string("tokenizer.ggml.pre", "");
  const LlamaPreTokenizer pre = llama_pre_tokenizer(pre_name);
  VocabDefaults d;
  d.bos_id = pre.no_bos ? -1 : 11;
  d.eos_id = 11;
  d.add_bos = pre.add_bos;
  load_vocab(file, d);
  for (const std::string& r : pre.regexes)
    pre_.add_split(r, Regex::Dialect::kStdRegex, SplitBehavior::kIsolated);

  const char* kKeyMerges = "tokenizer.ggml.merges";
  const GgufValue& mv = file.get(kKeyMerges);
  MOE_CHECK(mv.type() == GgufType::ARRAY && mv.elem_type() == GgufType::STRING, kKeyMerges,
            ": expected an array of strings");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(mv.elems().size());
  for (const GgufValue& e : mv.elems()) {
    const std::string& m = e.as_string();
    const size_t sp = m.find(' ', 1);  // as llama.cpp: a leading space belongs to the left part
    if (sp == std::string::npos) {
      merges.emplace_back();  // llama.cpp ranks it as ("", ""), which never matches
      continue;
    }
    merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  is_model_token_.assign(tokens_.size(), 1);
  BpeOptions o;
  o.hf = false;
  o.ignore_merges = pre.ignore_merges;
  init_bpe(
      merges, [this](const std::string& t) { return find_token(t); }, o);

  pieces_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const uint32_t attr = attrs_[i];
    if (attr & (kAttrControl | kAttrUnknown | kAttrUserDefined)) {
      pieces_[i] = tokens_[i];
    } else if (attr & kAttrNormal) {
      pieces_[i] = llama_decode_text(tokens_[i]);
    }
  }
}

void BpeTokenizer::init_bpe(const std::vector<std::pair<std::string, std::string>>& merges,
                            const TokenLookup& lookup, const BpeOptions& options) {
  options_ = options;
  ignore_merges_ = options.ignore_merges;
  MOE_CHECK(is_model_token_.size() == tokens_.size(), "BPE: model-token flags not set");
  // Ids for texts: real tokens via lookup; with llama.cpp rules, virtual ids for the rest.
  TokenIdMap virtual_ids;
  virtual_texts_.clear();
  auto id_of = [&](const std::string& text) -> int32_t {
    const int32_t id = lookup(text);
    if (id >= 0 || options.hf) return id;
    const auto [it, inserted] =
        virtual_ids.emplace(text, n_vocab() + static_cast<int32_t>(virtual_texts_.size()));
    if (inserted) virtual_texts_.push_back(text);
    return it->second;
  };
  for (int b = 0; b < 256; ++b) byte_ids_[b] = id_of(std::string(byte_to_utf8(static_cast<uint8_t>(b))));

  merges_ = std::make_unique<MergeTable>(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    if (a.empty() && b.empty() && !options.hf) continue;  // llama.cpp's unsplittable entry
    const int32_t ia = id_of(a), ib = id_of(b), ir = id_of(a + b);
    if (ia < 0 || ib < 0 || ir < 0) {
      const std::string missing = ia < 0 ? a : ib < 0 ? b : a + b;
      fail("merge ", rank, " '", a, " ", b, "': '", missing, "' is not in the vocabulary");
    }
    // Hugging Face collects merges into a hash map (a later duplicate wins); llama.cpp emplaces
    // into a map (the first wins).
    merges_->insert(ia, ib, static_cast<int32_t>(rank), ir, options.hf);
  }
  cache_ = std::make_unique<WordCache>();  // results of the previous tables are void
}

int32_t BpeTokenizer::model_token(std::string_view byte_level_text) const {
  const int32_t id = find_token(byte_level_text);
  return id >= 0 && is_model_token_[id] ? id : -1;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool parse_special) const {
  std::string storage;
  text = sanitize_utf8(text, &storage);
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  for (const Fragment& f : partition_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
    } else {
      encode_plain(text.substr(f.offset, f.length), &out);
    }
  }
  return out;
}

std::string BpeTokenizer::token_to_piece(int32_t id, bool special) const {
  check_id(id);
  if (attrs_[id] & (kAttrControl | kAttrUnknown)) return special ? pieces_[id] : std::string();
  return pieces_[id];
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>* out) const {
  pre_.split(text, [this, out](std::string_view word) { encode_word(word, out); });
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.size() == 1) {
    const int32_t id = byte_ids_[static_cast<uint8_t>(word[0])];
    if (id >= 0 && id < n_vocab()) {
      out->push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() <= WordCache::kMaxWordBytes;
  const uint64_t h = cacheable ? WordCache::hash(word) : 0;
  if (cacheable && cache_->get(word, h, out)) return;
  const size_t start = out->size();
  int32_t whole = -1;
  if (ignore_merges_) {
    std::string mapped;
    byte_level_encode(word, &mapped);
    whole = model_token(mapped);
  }
  if (whole >= 0) {
    out->push_back(whole);
  } else {
    merge_word(word, out);
  }
  if (cacheable) cache_->put(word, h, out->data() + start, out->size() - start);
}

void BpeTokenizer::merge_word(std::string_view word, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&](int32_t id) { syms.push_back({id, static_cast<int32_t>(syms.size()) - 1, -1}); };
  // Initial symbols: one per byte (Hugging Face's merge_word, with its unk / byte-fallback
  // handling for characters outside the vocabulary).
  int32_t pending_unk = -1;  // an unknown run not yet added (Hugging Face adds it lazily)
  for (char c : word) {
    const auto b = static_cast<uint8_t>(c);
    const int32_t id = byte_ids_[b];
    if (id >= 0) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(id);
      continue;
    }
    if (options_.byte_fallback) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const char name[] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
      const int32_t fb = find_token(std::string_view(name, sizeof(name)));
      if (fb >= 0) {
        add(fb);
        continue;
      }
    }
    if (options_.unk_id >= 0) {
      if (pending_unk >= 0 && !options_.fuse_unk) add(pending_unk);
      pending_unk = options_.unk_id;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (syms.empty()) return;
  for (size_t i = 0; i + 1 < syms.size(); ++i) syms[i].next = static_cast<int32_t>(i + 1);

  // Repeatedly merge the adjacent pair of lowest rank, leftmost first (Hugging Face's
  // Word::merge_all and llama.cpp's work queue agree on this order). Entries whose symbols
  // changed since they were queued are skipped when popped. O(n log n) in the word length.
  // A queued pair: key = rank << 32 | left index (so the smallest key is the lowest rank,
  // leftmost); valid while its two symbols still have the ids it was queued with (a symbol's
  // id changes whenever it merges, and only merging changes its right neighbour).
  struct Candidate {
    uint64_t key;
    int32_t left_id;
    int32_t right_id;
  };
  auto later = [](const Candidate& a, const Candidate& b) { return a.key > b.key; };
  std::vector<Candidate> heap;
  heap.reserve(syms.size());
  auto candidate = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return false;
    const MergeTable::Slot* m = merges_->find(syms[left].id, syms[right].id);
    if (!m) return false;
    heap.push_back(
        {static_cast<uint64_t>(m->rank) << 32 | static_cast<uint32_t>(left), syms[left].id, syms[right].id});
    return true;
  };
  for (size_t i = 0; i + 1 < syms.size(); ++i)
    candidate(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate c = heap.back();
    heap.pop_back();
    const auto left = static_cast<int32_t>(c.key & 0xFFFFFFFFu);
    Symbol& l = syms[left];
    if (l.id != c.left_id || l.next < 0 || syms[l.next].id != c.right_id) continue;  // stale
    Symbol& r = syms[l.next];
    l.id = merges_->find(c.left_id, c.right_id)->result;
    r.id = -1;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = left;
    if (candidate(l.prev, left)) std::push_heap(heap.begin(), heap.end(), later);
    if (candidate(left, l.next)) std::push_heap(heap.begin(), heap.end(), later);
  }

  const int32_t n = n_vocab();
  for (int32_t i = 0; i >= 0; i = syms[i].next) {
    const int32_t id = syms[i].id;
    if (id < n) {
      out->push_back(id);
      continue;
    }
    // llama.cpp: a symbol that is no token is emitted as the tokens of its single bytes.
    for (char c : virtual_texts_[id - n]) {
      const int32_t t = find_token(std::string_view(&c, 1));
      if (t >= 0) out->push_back(t);
    }
  }
}

std::unique_ptr<Tokenizer> bpe_tokenizer_from_gguf(const GgufFile& file) {
  return std::make_unique<BpeTokenizer>(file);
}

}  // namespace moe
