#include "tokenizer/spm.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "formats/gguf.h"

namespace moe {
namespace {

constexpr std::string_view kSpaceMark = "\xe2\x96\x81";  // U+2581, SentencePiece's space

// Bytes of the UTF-8 character a lead byte starts (llama.cpp's unicode_len_utf8: continuation
// and invalid bytes count as one-byte characters).
size_t utf8_len(char c) {
  static constexpr size_t kLookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLookup[static_cast<uint8_t>(c) >> 4];
}

std::string unescape_spaces(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
      out += ' ';
      i += kSpaceMark.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

// A run of the input: a character at first, a merged piece later. Symbols form a linked list in
// text order; a symbol merged into its left neighbour has n == 0.
struct Symbol {
  int prev;
  int next;
  size_t offset;
  size_t n;
};

struct Bigram {
  int left;
  int right;
  float score;
  size_t size;
};

// Highest score first; among equal scores the leftmost (llm_bigram_spm::comparator). Entries
// that went stale are skipped when popped, so the order among equal keys does not matter.
struct BigramLess {
  bool operator()(const Bigram& l, const Bigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};

}  // namespace

struct SpmTokenizer::Scratch {
  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;  // a max-heap under BigramLess
};

SpmTokenizer::SpmTokenizer(const GgufFile& file) {
  VocabDefaults d;
  d.bos_id = 1;
  d.eos_id = 2;
  d.unk_id = 0;
  d.add_bos = true;
  d.add_eos = false;
  d.add_space_prefix = true;
  load_vocab(file, d);

  pieces_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const uint32_t attr = attrs_[i];
    const std::string& text = tokens_[i];
    if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) {
      pieces_[i] = text;
    } else if (attr & kAttrNormal) {
      pieces_[i] = unescape_spaces(text);
    } else if (attr & kAttrByte) {
      // llama.cpp's token_to_byte: strtol of the two characters after "<0x".
      MOE_CHECK(text.size() >= 3, "tokenizer.ggml.tokens: byte token ", i, " '", text,
                "' is not of the form <0xNN>");
      const std::string hex = text.substr(3, 2);
      pieces_[i] = std::string(1, static_cast<char>(std::strtol(hex.c_str(), nullptr, 16)));
    }  // unused and undefined tokens decode to nothing
  }

  isolated_.fill(true);
  for (const std::string& t : tokens_) {
    if (t.size() < 2) continue;
    for (char c : t)
      if (static_cast<uint8_t>(c) < 128) isolated_[static_cast<uint8_t>(c)] = false;
  }

  // Byte fallback (llama.cpp's byte_to_token): the <0xNN> token, else the one-byte token.
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const char name[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
    int32_t id = find_token(std::string_view(name, 6));
    if (id < 0 && b != 0) id = find_token(std::string(1, static_cast<char>(b)));
    byte_ids_[b] = id;
  }
}

std::string SpmTokenizer::token_to_piece(int32_t id, bool special) const {
  check_id(id);
  if (!special && (attrs_[id] & (kAttrUnknown | kAttrControl))) return {};
  return pieces_[id];
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  std::string escaped;
  bool prev_special = true;  // the start of the text counts as "after a special token"
  for (const Fragment& f : partition_special(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    escaped.clear();
    if (add_space_prefix_ && prev_special) escaped += kSpaceMark;
    for (char c : text.substr(f.offset, f.length)) {
      if (c == ' ')
        escaped += kSpaceMark;
      else
        escaped += c;
    }
    encode_fragment(escaped, out);
    prev_special = false;
  }
  return out;
}

void SpmTokenizer::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  // A character that is an isolated byte never merges, and its neighbours never merge across
  // it; merging the runs between such characters separately changes nothing but the cost
  // (merges in different runs never interact, and within a run their order is the same). Runs
  // are cut only at character starts, so the character split is that of the whole fragment.
  Scratch scratch;
  size_t start = 0;
  for (size_t offs = 0; offs < text.size();) {
    const auto c = static_cast<uint8_t>(text[offs]);
    if (c < 128 && isolated_[c]) {
      merge_run(text.substr(start, offs - start), scratch, out);
      emit(text.substr(offs, 1), out);
      start = offs + 1;
    }
    offs += utf8_len(text[offs]);
  }
  merge_run(text.substr(start), scratch, out);
}

void SpmTokenizer::merge_run(std::string_view text, Scratch& scratch, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  for (size_t offs = 0; offs < text.size();) {
    const size_t n = std::min(utf8_len(text[offs]), text.size() - offs);
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({index - 1, offs + n == text.size() ? -1 : index + 1, offs, n});
    offs += n;
  }

  std::vector<Bigram>& heap = scratch.heap;
  heap.clear();
  auto try_add_bigram = [&](int left, int right) {
    if (left == -1 || right == -1) return;
    const std::string_view piece = text.substr(symbols[left].offset, symbols[left].n + symbols[right].n);
    const int32_t id = find_token(piece);
    if (id < 0) return;
    heap.push_back({left, right, scores_[id], piece.size()});
    std::push_heap(heap.begin(), heap.end(), BigramLess());
  };

  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add_bigram(i - 1, i);

  // Merge the best-scoring adjacent pair until no adjacent pair forms a token.
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BigramLess());
    const Bigram bigram = heap.back();
    heap.pop_back();
    Symbol& left = symbols[bigram.left];
    Symbol& right = symbols[bigram.right];
    // Skip pairs of which one side has changed since the pair was queued.
    if (left.n == 0 || right.n == 0 || left.n + right.n != bigram.size) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = bigram.left;
    try_add_bigram(left.prev, bigram.left);
    try_add_bigram(bigram.left, left.next);
  }

  // Every merged symbol is a vocabulary entry (pairs are queued only then), so llama.cpp's
  // rev_merge re-segmentation never applies: a symbol is a token or falls back to bytes.
  for (int i = 0; i != -1; i = symbols[i].next) emit(text.substr(symbols[i].offset, symbols[i].n), out);
}

void SpmTokenizer::emit(std::string_view piece, std::vector<int32_t>& out) const {
  const int32_t id = find_token(piece);
  if (id >= 0) {
    out.push_back(id);
    return;
  }
  for (char c : piece) {
    // llama.cpp throws here (std::out_of_range); we fall back to <unk> when there is one.
    int32_t b = byte_ids_[static_cast<uint8_t>(c)];
    if (b < 0) b = unk_id_;
    MOE_CHECK(b >= 0, "tokenizer: no token for byte 0x", std::hex, static_cast<int>(static_cast<uint8_t>(c)),
              " and no unknown token");
    out.push_back(b);
  }
}

}  // namespace moe
