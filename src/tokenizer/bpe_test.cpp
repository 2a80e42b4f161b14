// Byte-level BPE: exact ids against Hugging Face tokenizers (tokenizer.json) and llama.cpp (GGUF
// vocabularies with their test vectors), a committed corpus of ids from the real HF library
// (re-checked live when node and the npm peer are installed), and property tests.
#include "tokenizer/bpe.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "formats/gguf.h"
#include "testdata.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace moe {
namespace {

using nlohmann::json;

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<int32_t> parse_ids(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (long v; in >> v;) ids.push_back(static_cast<int32_t>(v));
  return ids;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(test::read_file(path));
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// llama.cpp's test-tokenizer-0 format: .inp strings separated by "\n__ggml_vocab_test__\n" (the
// file ends with one), .out one line of ids per string.
std::vector<Case> read_vocab_tests(const std::string& inp_path) {
  const std::string raw = test::read_file(inp_path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      texts.push_back(raw.substr(pos));
      break;
    }
    texts.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  const std::vector<std::string> out = read_lines(inp_path.substr(0, inp_path.size() - 4) + ".out");
  EXPECT_EQ(texts.size(), out.size()) << inp_path;
  std::vector<Case> cases;
  for (size_t i = 0; i < texts.size() && i < out.size(); ++i) cases.push_back({texts[i], parse_ids(out[i])});
  return cases;
}

std::vector<Case> read_special_jsonl(const std::string& path) {
  std::vector<Case> cases;
  for (const std::string& line : read_lines(path)) {
    if (line.empty()) continue;
    const json j = json::parse(line);
    cases.push_back({j["text"].get<std::string>(), j["ids"].get<std::vector<int32_t>>()});
  }
  return cases;
}

std::string show(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += " " + std::to_string(id);
  return s;
}

// Encodes every case; reports each mismatch and prints the pass count.
void check_cases(const Tokenizer& tok, const std::vector<Case>& cases, bool parse_special,
                 const std::string& label) {
  size_t pass = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::vector<int32_t> got = tok.encode(cases[i].text, parse_special);
    if (got == cases[i].ids) {
      ++pass;
    } else {
      ADD_FAILURE() << label << " case " << i << " " << json(cases[i].text).dump()
                    << "\n  want:" << show(cases[i].ids) << "\n  got: " << show(got);
    }
  }
  std::printf("[   INFO   ] %s: %zu/%zu exact\n", label.c_str(), pass, cases.size());
  EXPECT_GT(cases.size(), 0u) << label;
}

const Tokenizer& hf(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[name];
  if (!t) t = tokenizer_from_hf(test::testdata("tokenizers/" + name + "/tokenizer.json"));
  return *t;
}

struct Gguf {
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<Tokenizer> tok;
};
const Tokenizer& gguf(const std::string& name) {
  static std::map<std::string, Gguf> cache;
  Gguf& g = cache[name];
  if (!g.tok) {
    g.file = GgufFile::open(test::testdata("vocab/ggml-vocab-" + name + ".gguf"));
    g.tok = bpe_tokenizer_from_gguf(*g.file);
  }
  return *g.tok;
}

std::string corpus_dir() { return std::string(MOE_SOURCE_DIR) + "/tests/data/tokenizer_corpus"; }

std::vector<std::string> read_corpus(const std::string& path) {
  std::vector<std::string> texts;
  for (const std::string& line : read_lines(path))
    if (!line.empty()) texts.push_back(json::parse(line)["text"].get<std::string>());
  return texts;
}

// ---- test vectors -------------------------------------------------------------------------

TEST(BpeTokenizerVectors, DeepseekV3Hf) {
  check_cases(hf("deepseek-v3"), read_vocab_tests(test::testdata("tokenizers/deepseek-v3/deepseek-v3.inp")),
              true, "deepseek-v3.inp");
}

TEST(BpeTokenizerVectors, DeepseekV3Special) {
  check_cases(hf("deepseek-v3"),
              read_special_jsonl(test::testdata("tokenizers/deepseek-v3/deepseek-v3-special.jsonl")), true,
              "deepseek-v3-special.jsonl");
}

TEST(BpeTokenizerVectors, Qwen3Hf) {
  check_cases(hf("qwen3"), read_vocab_tests(test::testdata("tokenizers/qwen3/qwen3.inp")), true, "qwen3.inp");
}

TEST(BpeTokenizerVectors, Qwen3Special) {
  check_cases(hf("qwen3"), read_special_jsonl(test::testdata("tokenizers/qwen3/qwen3-special.jsonl")), true,
              "qwen3-special.jsonl");
}

TEST(BpeTokenizerVectors, GgufDeepseekCoder) {
  check_cases(gguf("deepseek-coder"),
              read_vocab_tests(test::testdata("vocab/ggml-vocab-deepseek-coder.gguf.inp")), false,
              "ggml-vocab-deepseek-coder");
}

TEST(BpeTokenizerVectors, GgufGpt2) {
  check_cases(gguf("gpt-2"), read_vocab_tests(test::testdata("vocab/ggml-vocab-gpt-2.gguf.inp")), false,
              "ggml-vocab-gpt-2");
}

TEST(BpeTokenizerVectors, GgufStarcoder) {
  check_cases(gguf("starcoder"), read_vocab_tests(test::testdata("vocab/ggml-vocab-starcoder.gguf.inp")),
              false, "ggml-vocab-starcoder");
}

TEST(BpeTokenizerVectors, HfDirectoryAndMetadata) {
  const auto dir = tokenizer_from_hf(test::testdata("tokenizers/deepseek-v3"));
  EXPECT_EQ(dir->encode("Hello world", true), hf("deepseek-v3").encode("Hello world", true));
  EXPECT_EQ(dir->n_vocab(), 128815);
  EXPECT_EQ(dir->bos_id(), 0);
  EXPECT_EQ(dir->eos_id(), 1);
  EXPECT_TRUE(dir->add_bos());
  EXPECT_TRUE(dir->is_eog(1));
  const Tokenizer& q = hf("qwen3");
  EXPECT_EQ(q.bos_id(), -1);
  EXPECT_FALSE(q.add_bos());
  EXPECT_EQ(q.eos_id(), q.find_token("<|im_end|>"));
  EXPECT_TRUE(q.is_eog(q.find_token("<|endoftext|>")));
  EXPECT_EQ(q.find_token("<think>"), 151667);
}

// ---- corpus vs the real Hugging Face library -----------------------------------------------

void check_corpus(const std::string& name) {
  const std::vector<std::string> texts = read_corpus(corpus_dir() + "/corpus.jsonl");
  const std::vector<std::string> want = read_lines(corpus_dir() + "/" + name + ".ids");
  ASSERT_EQ(texts.size(), want.size()) << "regenerate with scripts/make-tokenizer-corpus.sh";
  std::vector<Case> cases;
  size_t bytes = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    cases.push_back({texts[i], parse_ids(want[i])});
    bytes += texts[i].size();
  }
  check_cases(hf(name), cases, true, name + " corpus (" + std::to_string(bytes) + " bytes)");
}

TEST(BpeTokenizerCorpus, DeepseekV3MatchesHf) { check_corpus("deepseek-v3"); }
TEST(BpeTokenizerCorpus, Qwen3MatchesHf) { check_corpus("qwen3"); }

// Random strings, written for node, tokenized by the real library, compared with ours.
std::string random_text(std::mt19937& rng, size_t n_chars, bool with_special);

bool hf_peer_available() {
  const std::string peer = std::string(MOE_SOURCE_DIR) + "/.cache/peers/node_modules/@anush008/tokenizers";
  return std::filesystem::exists(peer) && test::run_command("node --version >/dev/null 2>&1", nullptr) == 0;
}

TEST(BpeTokenizerCorpus, LiveHfComparison) {
  if (!hf_peer_available()) {
    GTEST_SKIP() << "node or .cache/peers/@anush008/tokenizers missing (npm install --prefix "
                    ".cache/peers @anush008/tokenizers)";
  }
  const std::string dir = test::temp_dir("bpe-live");
  const std::string corpus = dir + "/random.jsonl";
  {
    // MOE_BPE_FUZZ_N / MOE_BPE_FUZZ_SEED widen the search when hunting for differences.
    const char* n_env = std::getenv("MOE_BPE_FUZZ_N");
    const char* seed_env = std::getenv("MOE_BPE_FUZZ_SEED");
    const int n = n_env ? std::atoi(n_env) : 1500;
    std::mt19937 rng(seed_env ? static_cast<uint32_t>(std::atoi(seed_env)) : 20240607u);
    std::ofstream f(corpus, std::ios::binary);
    for (int i = 0; i < n; ++i) f << json({{"text", random_text(rng, 1 + rng() % 120, true)}}).dump() << "\n";
  }
  for (const std::string name : {"deepseek-v3", "qwen3"}) {
    for (const std::string& file : {corpus, corpus_dir() + "/corpus.jsonl"}) {
      const std::string cmd = "node " + std::string(MOE_SOURCE_DIR) + "/scripts/hf-tokenizer-ids.mjs " +
                              test::testdata("tokenizers/" + name + "/tokenizer.json") + " " + file;
      std::string out;
      ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd;
      const std::vector<std::string> texts = read_corpus(file);
      std::vector<Case> cases;
      std::istringstream in(out);
      std::string line;
      for (const std::string& t : texts) {
        std::getline(in, line);
        cases.push_back({t, parse_ids(line)});
      }
      check_cases(hf(name), cases, true, name + " live " + std::filesystem::path(file).filename().string());
    }
  }
  std::filesystem::remove_all(dir);
}

// ---- special tokens -----------------------------------------------------------------------

TEST(BpeTokenizerSpecial, ControlTokensOnlyWithParseSpecial) {
  const Tokenizer& ds = hf("deepseek-v3");
  const int32_t assistant = ds.find_token(
      "<\xef\xbd\x9c"
      "Assistant\xef\xbd\x9c>");
  ASSERT_EQ(assistant, 128804);
  const std::string text =
      "hi<\xef\xbd\x9c"
      "Assistant\xef\xbd\x9c>there";
  const auto on = ds.encode(text, true);
  const auto off = ds.encode(text, false);
  EXPECT_NE(std::find(on.begin(), on.end(), assistant), on.end());
  EXPECT_EQ(std::find(off.begin(), off.end(), assistant), off.end());
  EXPECT_EQ(ds.decode(off), text);
  EXPECT_EQ(ds.decode(on, true), text);
  EXPECT_EQ(ds.decode(on, false), "hithere");  // control tokens are hidden unless special

  const Tokenizer& q = hf("qwen3");
  const int32_t im_start = q.find_token("<|im_start|>");
  const int32_t think = q.find_token("<think>");
  const auto q_off = q.encode("<|im_start|>user<think>", false);
  EXPECT_EQ(std::find(q_off.begin(), q_off.end(), im_start), q_off.end());
  EXPECT_NE(std::find(q_off.begin(), q_off.end(), think), q_off.end());  // user-defined: always
  EXPECT_EQ(q.encode("<|im_start|>user<think>", true), (std::vector<int32_t>{im_start, 872, think}));
  EXPECT_EQ(q.token_to_piece(think, false), "<think>");
}

TEST(BpeTokenizerSpecial, GgufUserDefinedAlwaysControlOnlyWithParseSpecial) {
  const Tokenizer& sc = gguf("starcoder");
  const auto off = sc.encode("<fim_prefix>x", false);
  const auto on = sc.encode("<fim_prefix>x", true);
  EXPECT_EQ(on.front(), 1);
  EXPECT_NE(off.front(), 1);
  EXPECT_EQ(sc.decode(off), "<fim_prefix>x");
}

// ---- properties ---------------------------------------------------------------------------

// Code points from the scripts and edge cases the tokenizers treat specially.
std::string random_text(std::mt19937& rng, size_t n_chars, bool with_special) {
  static const std::vector<std::pair<uint32_t, uint32_t>> kRanges = {
      {0x20, 0x7E},       {0x20, 0x20},       {0x30, 0x39},       {0x09, 0x0D},       {0xA0, 0xFF},
      {0x100, 0x17F},     {0x300, 0x36F},     {0x391, 0x3C9},     {0x400, 0x44F},     {0x5D0, 0x5EA},
      {0x600, 0x6FF},     {0x660, 0x669},     {0x900, 0x97F},     {0xE00, 0xE5B},     {0x1100, 0x11FF},
      {0x180E, 0x180E},   {0x2000, 0x206F},   {0x2460, 0x24FF},   {0x3000, 0x303F},   {0x3040, 0x30FF},
      {0x4E00, 0x9FA5},   {0xAC00, 0xD7A3},   {0xFF01, 0xFF5E},   {0xFE0F, 0xFE0F},   {0x200D, 0x200D},
      {0x1F300, 0x1F64F}, {0x1F3FB, 0x1F3FF}, {0x1D400, 0x1D4FF}, {0xE000, 0xE010},   {0x85, 0x85},
      {0x20000, 0x20100}, {0xFFF0, 0xFFFD},   {0x31350, 0x313A0}, {0x16D40, 0x16D79}, {0x10D40, 0x10D8F},
      {0x898, 0x89F},     {0x1AB0, 0x1ACE},   {0x11930, 0x11938}, {0x7FD, 0x7FD}};
  static const char* kSpecial[] = {
      "<\xef\xbd\x9c"
      "Assistant\xef\xbd\x9c>",
      "<|im_start|>",
      "<think>",
      "</think>",
      "<|endoftext|>",
      "'s",
      "'LL",
      "\r\n"};
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) {
    if (with_special && rng() % 40 == 0) {
      s += kSpecial[rng() % std::size(kSpecial)];
      continue;
    }
    const auto& [lo, hi] = kRanges[rng() % kRanges.size()];
    const uint32_t cp = lo + rng() % (hi - lo + 1);
    const int repeat = rng() % 10 == 0 ? 1 + rng() % 6 : 1;
    for (int r = 0; r < repeat; ++r) append_utf8(cp, &s);
  }
  return s;
}

std::string stream_decode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool special) {
  StreamDecoder dec(tok, special);
  std::string s;
  for (int32_t id : ids) {
    const std::string part = dec.push(id);
    EXPECT_TRUE(is_valid_utf8(part));
    s += part;
  }
  return s + dec.flush();
}

TEST(BpeTokenizerProperty, RoundTripAndStreaming) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    const std::string s = random_text(rng, 1 + rng() % 80, true);
    for (const std::string name : {"deepseek-v3"}) {
      const Tokenizer& tok = hf(name);
      for (bool ps : {false, true}) {
        const auto ids = tok.encode(s, ps);
        ASSERT_EQ(tok.decode(ids, true), s) << json(s).dump();
        ASSERT_EQ(stream_decode(tok, ids, true), s);
      }
    }
    const std::string plain = random_text(rng, 1 + rng() % 80, false);
    const auto q_ids = hf("qwen3").encode(plain, false);  // Qwen normalizes to NFC first
    ASSERT_EQ(hf("qwen3").decode(q_ids), normalize_unicode(plain, NormalForm::kNfc)) << json(plain).dump();
    for (const std::string name : {"gpt-2", "starcoder", "deepseek-coder", "deepseek-llm"}) {
      const auto ids = gguf(name).encode(s, false);
      ASSERT_EQ(gguf(name).decode(ids), s) << name << " " << json(s).dump();
      ASSERT_EQ(stream_decode(gguf(name), ids, false), s);
    }
  }
}

TEST(BpeTokenizerProperty, InvalidUtf8IsReplacedNeverCrashes) {
  std::mt19937 rng(99);
  const Tokenizer& ds = hf("deepseek-v3");
  for (int i = 0; i < 500; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? 0x80 + rng() % 0x80 : rng() % 256);
    std::string storage;
    const std::string clean(sanitize_utf8(s, &storage));
    ASSERT_TRUE(is_valid_utf8(clean));
    const auto ids = ds.encode(s, true);
    EXPECT_EQ(ids, ds.encode(clean, true));
    EXPECT_EQ(ds.decode(ids, true), clean);
    for (const std::string name : {"gpt-2", "deepseek-coder"})
      EXPECT_EQ(gguf(name).decode(gguf(name).encode(s, true), true), clean);
    EXPECT_NO_THROW(hf("qwen3").encode(s, true));
  }
}

TEST(BpeTokenizerProperty, LongInputsAreFast) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const std::string& s : {std::string(1 << 20, ' '), std::string(1 << 18, 'a'),
                               std::string(1 << 17, '\n') + std::string(1 << 17, '\t'),
                               std::string(200000, '9'), std::string(100000, '!') + "\n\n x"}) {
    for (const Tokenizer* tok : {&hf("deepseek-v3"), &hf("qwen3"), &gguf("gpt-2")}) {
      const auto ids = tok->encode(s, false);
      ASSERT_EQ(tok->decode(ids), s);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 30.0);  // quadratic merging would take hours
}

// ---- units --------------------------------------------------------------------------------

TEST(BpeTokenizerUnicode, SanitizeReplacesMaximalSubparts) {
  std::string st;
  EXPECT_EQ(sanitize_utf8("abc", &st), "abc");
  // WHATWG examples: one U+FFFD per maximal subpart.
  EXPECT_EQ(std::string(sanitize_utf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62", &st)),
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(std::string(sanitize_utf8("\xED\xA0\x80", &st)),  // a surrogate: 3 replacements
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(std::string(sanitize_utf8("\xC0\xAF", &st)), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(std::string(sanitize_utf8("\xF4\x90\x80\x80", &st)),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(std::string(sanitize_utf8("x\xE2\x82", &st)), "x\xEF\xBF\xBD");
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\xA6\x99"));
  EXPECT_FALSE(is_valid_utf8("\xF0\x9F\xA6"));
}

TEST(BpeTokenizerUnicode, ByteLevelMapAndNormalization) {
  EXPECT_EQ(byte_to_utf8(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(byte_to_utf8('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(byte_to_utf8('a'), "a");
  std::string all, enc, dec;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  byte_level_encode(all, &enc);
  ASSERT_TRUE(byte_level_decode(enc, &dec));
  EXPECT_EQ(dec, all);
  EXPECT_FALSE(byte_level_decode(" ", &dec));  // a plain space stands for no byte
  EXPECT_EQ(normalize_unicode("e\xCC\x81", NormalForm::kNfc), "\xC3\xA9");
  EXPECT_EQ(normalize_unicode("\xC3\xA9", NormalForm::kNfd), "e\xCC\x81");
  EXPECT_EQ(normalize_unicode("\xEF\xAC\x81", NormalForm::kNfkc), "fi");
  EXPECT_EQ(lowercase_unicode("ABC\xC4\xB0\xCE\xA3"), "abci\xCC\x87\xCF\x83");
  // Hugging Face normalizes with Unicode 9.0 data: U+0898 (Unicode 14, ccc 230) is a starter
  // to it, so nothing moves across it and a + U+0301 still composes before it.
  EXPECT_EQ(normalize_unicode("a\xCC\x81\xE0\xA2\x98\xCC\x96", NormalForm::kNfc),
            "\xC3\xA1\xE0\xA2\x98\xCC\x96");
  const std::string dives = "\xF0\x91\xA4\xB5\xF0\x91\xA4\xB0";  // U+11935 U+11930 (13.0)
  EXPECT_EQ(normalize_unicode(dives, NormalForm::kNfc), dives);
}

TEST(BpeTokenizerPreTokenize, SplitBehaviorsAsHuggingFace) {
  auto run = [](std::string_view pattern, SplitBehavior b, bool invert, std::string_view text) {
    PreTokenizer p;
    p.add_split(pattern, Regex::Dialect::kOniguruma, b, invert);
    return p.split(text);
  };
  using V = std::vector<std::string>;
  const std::string s = "How are you doing?";
  EXPECT_EQ(run(" ", SplitBehavior::kRemoved, false, s), (V{"How", "are", "you", "doing?"}));
  EXPECT_EQ(run(" ", SplitBehavior::kIsolated, false, s), (V{"How", " ", "are", " ", "you", " ", "doing?"}));
  EXPECT_EQ(run(" ", SplitBehavior::kMergedWithPrevious, false, s), (V{"How ", "are ", "you ", "doing?"}));
  EXPECT_EQ(run(" ", SplitBehavior::kMergedWithNext, false, s), (V{"How", " are", " you", " doing?"}));
  EXPECT_EQ(run("-", SplitBehavior::kContiguous, false, "The-final--countdown"),
            (V{"The", "-", "final", "--", "countdown"}));
  EXPECT_EQ(run("\\w+|[^\\w\\s]+", SplitBehavior::kRemoved, true, s), (V{"How", "are", "you", "doing", "?"}));
  // \s is Unicode White_Space: U+0085 and U+3000 are, U+180E is not.
  EXPECT_EQ(run("\\s+", SplitBehavior::kRemoved, false,
                "a\xC2\x85"
                "b\xE3\x80\x80"
                "c\xE1\xA0\x8E"
                "d"),
            (V{"a", "b",
               "c\xE1\xA0\x8E"
               "d"}));
  // Look-ahead does not see past the piece: each piece is its own subject.
  PreTokenizer seq;
  seq.add_split("\\p{N}{1,3}", Regex::Dialect::kOniguruma, SplitBehavior::kIsolated);
  seq.add_split("\\s+(?!\\S)|\\s+", Regex::Dialect::kOniguruma, SplitBehavior::kIsolated);
  EXPECT_EQ(seq.split("ab   1234"), (V{"ab", "   ", "123", "4"}));
  PreTokenizer prefixed;
  prefixed.add_prefix_space();
  prefixed.add_split(kGpt2Pattern, Regex::Dialect::kOniguruma, SplitBehavior::kIsolated);
  EXPECT_EQ(prefixed.split("Hello world's"), (V{" Hello", " world", "'s"}));
  EXPECT_THROW(split_behavior_from_name("Sideways"), Error);
  EXPECT_THROW(Regex("(unclosed", Regex::Dialect::kOniguruma), Error);
}

// A tiny GGUF vocabulary exercising llama.cpp's merge rules.
std::vector<uint8_t> tiny_gguf(const std::vector<std::string>& tokens, const std::vector<std::string>& merges,
                               bool with_merges = true) {
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::str("gpt-2"));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  if (with_merges) w.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
  return w.to_bytes();
}

TEST(BpeTokenizerGguf, LlamaCppMergeRules) {
  // "ab" is no token, yet merges through it (llama.cpp merges texts); alone it is emitted byte
  // by byte. The duplicate "b c" keeps its first rank.
  const auto bytes = tiny_gguf({"a", "b", "c", "abc", "bc"}, {"a b", "ab c", "b c", "b c"});
  GgufFile f(bytes.data(), bytes.size(), "tiny");
  BpeTokenizer tok(f);
  EXPECT_EQ(tok.encode("abc", false), (std::vector<int32_t>{3}));
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(tok.encode("bc", false), (std::vector<int32_t>{4}));
  EXPECT_EQ(tok.encode("xbc", false), (std::vector<int32_t>{4}));  // 'x' is no token: dropped
  EXPECT_EQ(tok.decode({3, 4}), "abcbc");
  EXPECT_THROW(tok.token_to_piece(5, false), Error);

  const auto no_merges = tiny_gguf({"a"}, {}, false);
  GgufFile g(no_merges.data(), no_merges.size(), "tiny");
  try {
    BpeTokenizer t(g);
    ADD_FAILURE() << "no error for missing merges";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.merges"), std::string::npos) << e.what();
  }
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(BpeTokenizerHfJson, AddedTokenFlagsAndErrors) {
  const std::string dir = test::temp_dir("bpe-json");
  // Byte-level vocabulary of the printable ASCII characters plus a few merges.
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[std::string(byte_to_utf8(static_cast<uint8_t>(b)))] = b;
  vocab
      ["\xC4\xA0"
       "a"] = 256;
  json tj = {{"version", "1.0"},
             {"normalizer", {{"type", "Lowercase"}}},
             {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
             {"model",
              {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({json::array({"\xC4\xA0", "a"})})}}},
             {"added_tokens",
              json::array({{{"id", 257}, {"content", "[CLS]"}, {"special", true}, {"normalized", false}},
                           {{"id", 258},
                            {"content", "my"},
                            {"special", false},
                            {"normalized", true},
                            {"lstrip", true},
                            {"rstrip", true}},
                           {{"id", 259},
                            {"content", "ony"},
                            {"special", false},
                            {"normalized", true},
                            {"single_word", true}}})}};
  write_file(dir + "/tokenizer.json", tj.dump());
  const auto tok = tokenizer_from_hf(dir);
  // Hugging Face's options_use_cases: "my" takes both spaces, "ony" inside "anthony" does not
  // match, the normalized (lowercased) "My" matches "my".
  const auto ids = tok->encode("[CLS] My name is Anthony ony", true);
  // The vocabulary gives each byte's character the byte's value as id ("Ġ" = ' ' = 32).
  EXPECT_EQ(ids, (std::vector<int32_t>{257, 258, 'n', 'a', 'm', 'e', ' ', 'i', 's', 256, 'n', 't', 'h', 'o',
                                       'n', 'y', ' ', 259}));
  EXPECT_EQ(tok->decode(ids, true), "[CLS]myname is anthony ony");
  EXPECT_EQ(tok->decode(ids, false), "myname is anthony ony");

  tj["model"]["type"] = "Unigram";
  write_file(dir + "/tokenizer.json", tj.dump());
  EXPECT_THROW(tokenizer_from_hf(dir), Error);
  tj["model"]["type"] = "BPE";
  tj["pre_tokenizer"] = {{"type", "Whitespace"}};
  write_file(dir + "/tokenizer.json", tj.dump());
  EXPECT_THROW(tokenizer_from_hf(dir), Error);
  tj["pre_tokenizer"] = {{"type", "ByteLevel"}};
  tj["model"]["merges"] = json::array({"a zz"});
  write_file(dir + "/tokenizer.json", tj.dump());
  EXPECT_THROW(tokenizer_from_hf(dir), Error);  // merge of unknown tokens, as HF refuses
  write_file(dir + "/tokenizer.json", "{not json");
  EXPECT_THROW(tokenizer_from_hf(dir), Error);
  EXPECT_THROW(tokenizer_from_hf(dir + "/missing"), Error);
  std::filesystem::remove_all(dir);
}

// A GGUF vocabulary made from a tokenizer.json the way llama.cpp's convert_hf_to_gguf.py does
// (byte-level texts, added tokens as control or user-defined, "a b" merges).
std::vector<uint8_t> gguf_from_hf(const std::string& name, const std::string& pre) {
  const json tj = json::parse(test::read_file(test::testdata("tokenizers/" + name + "/tokenizer.json")));
  const auto& hf_tok = static_cast<const HfBpeTokenizer&>(hf(name));
  std::vector<std::string> tokens(hf_tok.n_vocab());
  std::vector<int32_t> types(hf_tok.n_vocab(), 1);
  for (int32_t i = 0; i < hf_tok.n_vocab(); ++i) tokens[i] = hf_tok.token_text(i);
  for (const auto& a : hf_tok.added_tokens()) types[a.id] = a.control ? 3 : 4;
  std::vector<std::string> merges;
  for (const json& m : tj["model"]["merges"])
    merges.push_back(m.is_string() ? m.get<std::string>()
                                   : m[0].get<std::string>() + " " + m[1].get<std::string>());
  GgufWriter w;
  w.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::str(pre));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  w.set("tokenizer.ggml.merges", GgufValue::str_array(merges));
  return w.to_bytes();
}

TEST(BpeTokenizerGguf, ConvertedFromHfMatchesHf) {
  for (const auto& [name, pre] :
       {std::pair<std::string, std::string>{"deepseek-v3", "deepseek-v3"}, {"qwen3", "qwen2"}}) {
    const auto bytes = gguf_from_hf(name, pre);
    GgufFile f(bytes.data(), bytes.size(), name);
    BpeTokenizer tok(f);
    std::vector<Case> cases;
    for (const std::string& t : read_corpus(corpus_dir() + "/corpus.jsonl")) {
      // llama.cpp does not apply tokenizer.json's normalizer (Qwen's NFC).
      if (name != "qwen3" || normalize_unicode(t, NormalForm::kNfc) == t)
        cases.push_back({t, hf(name).encode(t, true)});
    }
    check_cases(tok, cases, true, name + " as GGUF (" + pre + ")");
  }
}

TEST(BpeTokenizerProperty, ConcurrentEncodeSharesTheCacheSafely) {
  const std::vector<std::string> texts = read_corpus(corpus_dir() + "/corpus.jsonl");
  const std::vector<std::string> want = read_lines(corpus_dir() + "/qwen3.ids");
  ASSERT_EQ(texts.size(), want.size());
  const auto tok = tokenizer_from_hf(test::testdata("tokenizers/qwen3/tokenizer.json"));  // cold cache
  std::vector<std::thread> threads;
  std::vector<size_t> mismatches(4, 0);
  for (size_t t = 0; t < mismatches.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 2; ++round) {
        for (size_t i = t; i < texts.size() + t; ++i) {
          const size_t k = (i * 7 + t) % texts.size();
          if (tok->encode(texts[k], true) != parse_ids(want[k])) ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t m : mismatches) EXPECT_EQ(m, 0u);
}

TEST(BpeTokenizerPreTokenize, EveryLlamaPreTokenizerCompiles) {
  for (const char* pre : {"default",      "",
                          "llama3",       "llama-bpe",
                          "dbrx",         "glm4",
                          "deepseek-llm", "deepseek-coder",
                          "deepseek-v3",  "falcon",
                          "starcoder",    "gpt-2",
                          "qwen2",        "deepseek-r1-qwen",
                          "seed-coder",   "bailingmoe",
                          "tekken",       "gpt-4o",
                          "poro-chat",    "viking",
                          "chameleon",    "no-such-name"}) {
    const LlamaPreTokenizer lp = llama_pre_tokenizer(pre);
    PreTokenizer p;
    for (const std::string& r : lp.regexes)
      p.add_split(r, Regex::Dialect::kStdRegex, SplitBehavior::kIsolated);
    const std::string text = "Hello  world's 12345 \xCE\x90\xE1\xBF\x93 \xE4\xBD\xA0\xE5\xA5\xBD!\n\n";
    std::string joined;
    for (const std::string& w : p.split(text)) joined += w;
    EXPECT_EQ(joined, text) << pre;  // Isolated splits keep every byte
  }
  EXPECT_TRUE(llama_pre_tokenizer("llama-bpe").ignore_merges);
  EXPECT_THROW(llama_pre_tokenizer("kimi-k2"), Error);
}

}  // namespace
}  // namespace moe
