#include "tokenizer/spm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "testdata.h"
#include "tokenizer/tokenizer.h"

namespace moe {
namespace {

struct Loaded {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};

Loaded load(const std::string& relative) {
  Loaded l;
  l.file = GgufFile::open(test::testdata(relative));
  l.tok = tokenizer_from_gguf(*l.file);
  return l;
}

const Tokenizer& llama_spm() {
  static const Loaded l = load("vocab/ggml-vocab-llama-spm.gguf");
  return *l.tok;
}

const Tokenizer& stories() {
  static const Loaded l = load("models/stories260K.gguf");
  return *l.tok;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (long v; in >> v;) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

// A JSON array of integers, e.g. "[1, 2, 3]".
std::vector<int32_t> parse_json_ids(std::string s) {
  for (char& c : s)
    if (c == '[' || c == ']' || c == ',') c = ' ';
  return parse_ids(s);
}

std::string stream_all(const Tokenizer& tok, const std::vector<int32_t>& ids, bool special = false,
                       bool check_utf8 = true) {
  StreamDecoder dec(tok, special);
  std::string out;
  for (int32_t id : ids) {
    const std::string part = dec.push(id);
    if (check_utf8) {
      EXPECT_TRUE(valid_utf8(part)) << "id " << id;
    }
    out += part;
  }
  return out + dec.flush();
}

// llama.cpp's test-tokenizer-0 vectors: .inp strings joined by "\n__ggml_vocab_test__\n" (the
// newline before the marker is not part of the string), .out one line of ids per string;
// encoded without BOS and without special-token parsing.
TEST(SpmTokenizer, LlamaSpmVectors) {
  const std::string inp = test::read_file(test::testdata("vocab/ggml-vocab-llama-spm.gguf.inp"));
  const std::string out = test::read_file(test::testdata("vocab/ggml-vocab-llama-spm.gguf.out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> strings;
  for (size_t pos = 0; pos < inp.size();) {
    const size_t next = inp.find(sep, pos);
    if (next == std::string::npos) {
      strings.push_back(inp.substr(pos));
      break;
    }
    strings.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::string> lines;
  std::istringstream os(out);
  for (std::string line; std::getline(os, line);) lines.push_back(line);
  ASSERT_EQ(strings.size(), lines.size());
  ASSERT_GE(strings.size(), 40u);

  const Tokenizer& tok = llama_spm();
  size_t passed = 0;
  for (size_t i = 0; i < strings.size(); ++i) {
    const std::vector<int32_t> want = parse_ids(lines[i]);
    const std::vector<int32_t> got = tok.encode(strings[i], /*parse_special=*/false);
    EXPECT_EQ(got, want) << "vector " << i << ": '" << strings[i] << "'";
    passed += got == want;
    // None of the strings holds a special-token text, so parsing specials changes nothing.
    EXPECT_EQ(tok.encode(strings[i], true), want) << "vector " << i;
  }
  std::printf("llama-spm vectors: %zu/%zu pass\n", passed, strings.size());
}

TEST(SpmTokenizer, LlamaSpmMetadata) {
  const Tokenizer& tok = llama_spm();
  EXPECT_EQ(tok.n_vocab(), 32000);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_FALSE(tok.add_eos());
  EXPECT_TRUE(tok.add_space_prefix());
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_FALSE(tok.is_eog(1));
  EXPECT_EQ(tok.token_text(1), "<s>");
  EXPECT_EQ(tok.token_type(1), TokenType::kControl);
  EXPECT_EQ(tok.token_type(13), TokenType::kByte);
  EXPECT_EQ(tok.token_text(13), "<0x0A>");
  EXPECT_EQ(tok.find_token("\xe2\x96\x81Hello"), 15043);
  EXPECT_EQ(tok.find_token("no such token"), -1);
}

TEST(SpmTokenizer, SpecialTokens) {
  const Tokenizer& tok = llama_spm();
  // Control tokens are matched only with parse_special; text after one gets the space prefix.
  EXPECT_EQ(tok.encode("<s>Hello", true), (std::vector<int32_t>{1, 15043}));
  const std::vector<int32_t> plain = tok.encode("<s>Hello", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  std::vector<int32_t> want = tok.encode("Hello world", false);
  want.push_back(2);
  const std::vector<int32_t> tail = tok.encode(" again", false);
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(tok.encode("Hello world</s> again", true), want);
  EXPECT_EQ(tok.encode("</s></s>", true), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(tok.encode("", true), std::vector<int32_t>{});
  // Control pieces show only when asked for.
  EXPECT_EQ(tok.token_to_piece(1, false), "");
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.decode({1, 15043, 2}, false), " Hello");  // the leading BOS keeps the space
  EXPECT_EQ(tok.decode({1, 15043, 2}, true), "<s> Hello</s>");
  EXPECT_EQ(tok.decode({15043, 3186}), "Hello world");
}

// Ids that llama.cpp (node-llama-cpp 3.21.1's build, llama_tokenize with parse_special) gives.
// Text after a special token gets the space prefix again.
TEST(SpmTokenizer, ParseSpecialMatchesLlamaCpp) {
  const Tokenizer& tok = llama_spm();
  const std::pair<std::string, std::vector<int32_t>> cases[] = {
      {"M<s>msy`o2jw", {341, 1, 10887, 29891, 29952, 29877, 29906, 29926, 29893}},
      {"\xc2\xa0</s>p", {20246, 2, 282}},  // U+00A0 first
      {"U?[bL\xc3\xbc -Gn\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe\t<s></s>\t",
       {501, 29973, 29961, 29890, 29931, 29993, 448, 29954, 29876, 821, 4851, 12, 1, 2, 29871, 12}},
      {"x!`Q@5<<s>>+5X9</s>6Zs>@hh)   ",
       {921,   29991, 29952, 29984, 29992, 29945, 29966, 1,     1405,  29974, 29945, 29990,
        29929, 2,     29871, 29953, 29999, 29879, 29958, 29992, 25446, 29897, 1678}},
      {"]H,<s>\t</uQ<|im_end|></s>)J\xf0\x9f\x9a\x80)\xc3\xa9@  7MvTM77",
       {4514, 29950, 29892, 1,     29871, 12,    829,   29884, 29984, 29966, 29989,
        326,  29918, 355,   29989, 29958, 2,     1723,  29967, 243,   162,   157,
        131,  29897, 29948, 29992, 259,   29955, 29924, 29894, 23081, 29955, 29955}},
  };
  for (const auto& [text, ids] : cases) EXPECT_EQ(tok.encode(text, true), ids) << text;
  // llama_detokenize of the first case: the space added after <s> shows.
  EXPECT_EQ(tok.decode(cases[0].second, false), "M msy`o2jw");
  EXPECT_EQ(tok.decode(cases[0].second, true), "M<s> msy`o2jw");
}

TEST(SpmTokenizer, Pieces) {
  const Tokenizer& tok = llama_spm();
  EXPECT_EQ(tok.token_to_piece(15043, false), " Hello");  // U+2581 -> space
  EXPECT_EQ(tok.token_to_piece(13, false), "\n");         // <0x0A> -> the byte
  EXPECT_EQ(tok.token_to_piece(243, false), "\xf0");
  EXPECT_EQ(tok.token_to_piece(0, false), "");  // unknown is special
  EXPECT_EQ(tok.token_to_piece(0, true), "<unk>");
}

TEST(SpmTokenizer, Stories260K) {
  const Tokenizer& tok = stories();
  EXPECT_EQ(tok.n_vocab(), 512);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  const std::string s = "Once upon a time";
  const std::vector<int32_t> ids = tok.encode(s, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok.decode(ids), s);
  EXPECT_EQ(tok.token_to_piece(ids[0], false)[0], ' ');  // the prefix space is in the first piece

  const std::vector<int32_t> greedy =
      parse_json_ids(test::read_file(test::testdata("models/stories260K.greedy-200.ids.txt")));
  ASSERT_EQ(greedy.size(), 200u);
  // The model's own greedy output starts with the same tokens as the text's encoding.
  EXPECT_EQ(std::vector<int32_t>(greedy.begin(), greedy.begin() + ids.size()), ids);
  std::string want = test::read_file(test::testdata("models/stories260K.greedy-200.txt"));
  // The file is the 464 decoded characters plus a final newline that no token produced
  // (the last id is 358, a word piece).
  ASSERT_EQ(want.back(), '\n');
  want.pop_back();
  const std::string text = tok.decode(greedy);
  EXPECT_EQ(text, want);
  EXPECT_EQ(stream_all(tok, greedy), text);
}

TEST(StreamDecoder, ConcatenationEqualsDecode) {
  const Tokenizer& tok = llama_spm();
  for (const std::string s : {"Hello world", " leading space", "🦙 llama.cpp ü€ 中文 🚀🚀",
                              "\n\n  tabs\tand\nnewlines ", ""}) {
    const std::vector<int32_t> ids = tok.encode(s, false);
    EXPECT_EQ(stream_all(tok, ids), tok.decode(ids)) << s;
    EXPECT_EQ(tok.decode(ids), s);
  }
}

TEST(StreamDecoder, HoldsBackPartialCharacters) {
  const Tokenizer& tok = llama_spm();
  // "🦙" is not in the vocabulary: it encodes as four byte tokens after the prefix space.
  const std::vector<int32_t> ids = tok.encode("🦙", false);
  ASSERT_EQ(ids, (std::vector<int32_t>{29871, 243, 162, 169, 156}));
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(ids[0]), "");  // the prefix space, dropped
  EXPECT_EQ(dec.push(ids[1]), "");
  EXPECT_EQ(dec.push(ids[2]), "");
  EXPECT_EQ(dec.push(ids[3]), "");
  EXPECT_EQ(dec.push(ids[4]), "🦙");
  EXPECT_EQ(dec.push(tok.find_token("<0xC3>")), "");
  EXPECT_EQ(dec.push(tok.find_token("<0xA4>")), "ä");
  EXPECT_EQ(dec.push(tok.find_token("<0xE2>")), "");
  // A byte that cannot continue the sequence makes it invalid for good: it is passed through.
  EXPECT_EQ(dec.push(15043), "\xe2 Hello");
  EXPECT_EQ(dec.flush(), "");
}

TEST(StreamDecoder, FlushEmitsIncompleteTail) {
  const Tokenizer& tok = llama_spm();
  StreamDecoder dec(tok);
  EXPECT_EQ(dec.push(15043), "Hello");
  EXPECT_EQ(dec.push(tok.find_token("<0xF0>")), "");
  EXPECT_EQ(dec.push(tok.find_token("<0x9F>")), "");
  EXPECT_EQ(dec.flush(), "\xf0\x9f");
  EXPECT_EQ(dec.flush(), "");
}

TEST(SpmTokenizer, RandomRoundTrip) {
  const Tokenizer& tok = llama_spm();
  std::vector<std::string> alphabet;
  for (char c = 0x20; c < 0x7f; ++c) alphabet.emplace_back(1, c);
  for (const char* m : {"\n", "\t", "é", "ü", "ж", "ß", "中", "文", "€", "🦙", "🚀", "ก"})
    alphabet.emplace_back(m);
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 48);
    for (int i = 0; i < len; ++i) s += alphabet[rng() % alphabet.size()];
    const std::vector<int32_t> ids = tok.encode(s, false);
    ASSERT_EQ(tok.decode(ids), s) << "'" << s << "'";
    ASSERT_EQ(stream_all(tok, ids), s) << "'" << s << "'";
  }
}

TEST(SpmTokenizer, InvalidUtf8FallsBackToBytes) {
  // Arbitrary bytes (no spaces and no 0xE2, so no U+2581 can appear) come back unchanged.
  const Tokenizer& tok = llama_spm();
  std::mt19937 rng(99);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 24);
    while (static_cast<int>(s.size()) < len) {
      const char c = static_cast<char>(rng() % 256);
      if (c != ' ' && c != '\xe2') s += c;
    }
    const std::vector<int32_t> ids = tok.encode(s, false);
    ASSERT_EQ(tok.decode(ids), s);
    ASSERT_EQ(stream_all(tok, ids, false, /*check_utf8=*/false), s);
  }
  // A lead byte swallows what follows it as one character, as in llama.cpp.
  EXPECT_EQ(tok.encode("\xe2\nx", false), (std::vector<int32_t>{29871, 229, 13, 123}));
}

TEST(SpmTokenizer, SpaceMarkInTextDecodesAsSpace) {
  // SentencePiece cannot tell U+2581 in the input from an escaped space (llama.cpp neither).
  const Tokenizer& tok = llama_spm();
  EXPECT_EQ(tok.decode(tok.encode("a\xe2\x96\x81"
                                  "b",
                                  false)),
            "a b");
  EXPECT_EQ(tok.encode("a\xe2\x96\x81"
                       "b",
                       false),
            tok.encode("a b", false));
}

TEST(SpmTokenizer, LongInputIsFast) {
  const Tokenizer& tok = llama_spm();
  std::string s;
  for (int i = 0; i < 20000; ++i) s += "word" + std::to_string(i % 97) + (i % 13 ? " " : "\n");
  const std::vector<int32_t> ids = tok.encode(s, false);
  EXPECT_EQ(tok.decode(ids), s);
  const std::string run(200000, 'a');  // no spaces: one fragment of 200k symbols
  EXPECT_EQ(tok.decode(tok.encode(run, false)), run);
}

TEST(SpmTokenizer, BadIdsThrow) {
  const Tokenizer& tok = llama_spm();
  EXPECT_THROW(tok.token_to_piece(-1, false), Error);
  EXPECT_THROW(tok.token_to_piece(tok.n_vocab(), true), Error);
  EXPECT_THROW(tok.decode({15043, 32000}), Error);
  EXPECT_THROW(tok.decode({-7}), Error);
  EXPECT_THROW(tok.token_text(-1), Error);
  EXPECT_THROW(tok.token_type(1 << 30), Error);
  StreamDecoder dec(tok);
  EXPECT_THROW(dec.push(99999), Error);
}

// --- Small hand-made vocabularies through GgufWriter ---

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
};

Vocab base_vocab() {
  Vocab v;
  auto add = [&](std::string t, float score, int32_t type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  for (const char* t : {"\xe2\x96\x81", "a", "b", "c"}) add(t, -10, 1);
  return v;
}

std::unique_ptr<Tokenizer> build(const Vocab& v, const std::function<void(GgufWriter&)>& extra = {}) {
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::str("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(v.tokens));
  w.set("tokenizer.ggml.scores", GgufValue::f32_array(v.scores));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(v.types));
  if (extra) extra(w);
  static std::vector<std::vector<uint8_t>> keep;  // GgufFile may point into the bytes
  keep.push_back(w.to_bytes());
  GgufFile file(keep.back().data(), keep.back().size(), "test");
  return tokenizer_from_gguf(file);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(SpmTokenizer, MergeOrderByScoreThenLeftmost) {
  Vocab v = base_vocab();
  v.tokens.insert(v.tokens.end(), {"ab", "bc"});
  v.scores.insert(v.scores.end(), {-1, -1});
  v.types.insert(v.types.end(), {1, 1});
  auto tok =
      build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false)); });
  EXPECT_EQ(tok->encode("abc", false), (std::vector<int32_t>{7, 6}));  // tie: leftmost pair
  v.scores.back() = -0.5f;
  tok = build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(false)); });
  EXPECT_EQ(tok->encode("abc", false), (std::vector<int32_t>{4, 8}));  // "bc" scores higher
  EXPECT_FALSE(tok->add_space_prefix());
  EXPECT_EQ(tok->decode({4, 8}), "abc");
}

TEST(SpmTokenizer, ByteFallbackAndUnknown) {
  Vocab v = base_vocab();
  auto tok = build(v);
  // No byte tokens: characters outside the vocabulary become <unk>, one per byte.
  EXPECT_EQ(tok->encode("aé", false), (std::vector<int32_t>{3, 4, 0, 0}));
  v.tokens.push_back("<0xC3>");
  v.scores.push_back(0);
  v.types.push_back(6);
  tok = build(v);
  EXPECT_EQ(tok->encode("é", false), (std::vector<int32_t>{3, 7, 0}));
}

TEST(SpmTokenizer, UserDefinedTokensAlwaysSplit) {
  Vocab v = base_vocab();
  v.tokens.insert(v.tokens.end(), {"<tag>", "<|im_end|>"});
  v.scores.insert(v.scores.end(), {0, 0});
  v.types.insert(v.types.end(), {4, 4});
  auto tok = build(v);
  EXPECT_EQ(tok->encode("a<tag>b", false), (std::vector<int32_t>{3, 4, 7, 3, 5}));
  // EOG-looking texts become control tokens that end generation.
  EXPECT_TRUE(tok->is_eog(8));
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_TRUE(tok->token_attr(8) & kAttrControl);
  EXPECT_EQ(tok->eot_id(), 8);
  EXPECT_EQ(tok->encode("a<|im_end|>", true), (std::vector<int32_t>{3, 4, 8}));
  EXPECT_EQ(tok->decode({7}), "<tag>");  // user-defined pieces always show
}

TEST(SpmTokenizer, MetadataErrors) {
  const Vocab v = base_vocab();
  EXPECT_NE(error_of([&] {
              GgufWriter w;
              w.set("tokenizer.ggml.tokens", GgufValue::str_array(v.tokens));
              const auto bytes = w.to_bytes();
              GgufFile f(bytes.data(), bytes.size(), "t");
              tokenizer_from_gguf(f);
            }).find("tokenizer.ggml.model"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::str("bert")); });
            }).find("unsupported tokenizer model 'bert'"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.model", GgufValue::str("xyz")); });
            }).find("'xyz'"),
            std::string::npos);
  Vocab short_scores = v;
  short_scores.scores.pop_back();
  EXPECT_NE(error_of([&] { build(short_scores); }).find("tokenizer.ggml.scores"), std::string::npos);
  Vocab short_types = v;
  short_types.types.push_back(1);
  EXPECT_NE(error_of([&] { build(short_types); }).find("tokenizer.ggml.token_type"), std::string::npos);
  EXPECT_NE(error_of([&] {
              build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(7)); });
            }).find("tokenizer.ggml.bos_token_id"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              build(v, [](GgufWriter& w) { w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(1000000)); });
            }).find("tokenizer.ggml.eos_token_id"),
            std::string::npos);
  Vocab dup = v;
  dup.tokens[5] = "a";
  EXPECT_NE(error_of([&] { build(dup); }).find("duplicate"), std::string::npos);
  EXPECT_NE(error_of([&] {
              build(v, [](GgufWriter& w) {
                w.set("tokenizer.ggml.tokens", GgufValue::f32_array({1, 2, 3, 4, 5, 6, 7}));
              });
            }).find("tokenizer.ggml.tokens"),
            std::string::npos);
  // Ids the file gives override the family defaults.
  auto tok = build(v, [](GgufWriter& w) {
    w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(2));
    w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(1));
    w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
  });
  EXPECT_EQ(tok->bos_id(), 2);
  EXPECT_EQ(tok->eos_id(), 1);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_TRUE(tok->is_eog(1));
  // -1 written as u32 means "none": the family default stays.
  tok = build(v, [](GgufWriter& w) {
    w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(0xFFFFFFFFu));
    w.set("tokenizer.ggml.padding_token_id", GgufValue::u32(0xFFFFFFFFu));
  });
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->pad_id(), -1);
}

}  // namespace
}  // namespace moe
