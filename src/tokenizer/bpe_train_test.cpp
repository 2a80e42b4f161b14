// BPE training: the written tokenizer.json loads in moe.cpp and in Hugging Face tokenizers (the
// npm peer, when installed) and both encode alike; round trips; exact vocabulary size;
// determinism; compression on held-out text; merges equal to a naive reference trainer; errors.
#include "tokenizer/bpe_train.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "core/error.h"
#include "testdata.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

namespace moe {
namespace {

using test::error_of;

using nlohmann::json;

const std::string kBos =
    "<\xef\xbd\x9c"
    "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";
const std::string kEos =
    "<\xef\xbd\x9c"
    "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>";

// The members of DeepSeek-V3's tokenizer.json other than "model" and "added_tokens" (parsing
// its 128k-token model under the sanitizers would take seconds).
const json& deepseek_v3() {
  static const json j = [] {
    const std::string text = test::read_file(test::testdata("tokenizers/deepseek-v3/tokenizer.json"));
    json out = json::object();
    for (const std::string key : {"normalizer", "pre_tokenizer", "post_processor", "decoder"}) {
      size_t pos = text.find("\"" + key + "\":");
      if (pos == std::string::npos) throw std::runtime_error("DeepSeek-V3 tokenizer.json lacks " + key);
      pos = text.find_first_not_of(" \t\r\n", text.find(':', pos) + 1);
      // The value runs to its matching bracket (strings skipped) or, for null, 4 characters.
      size_t end = pos;
      int depth = 0;
      bool in_string = false;
      do {
        const char c = text[end++];
        if (in_string) {
          if (c == '\\')
            ++end;
          else if (c == '"')
            in_string = false;
        } else if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          ++depth;
        } else if (c == '}' || c == ']') {
          --depth;
        }
      } while (depth > 0 && end < text.size());
      out[key] = json::parse(text.substr(pos, text[pos] == 'n' ? 4 : end - pos));
    }
    return out;
  }();
  return j;
}

const std::string& shakespeare() {
  static const std::string text = test::read_file(test::testdata("corpus/tinyshakespeare.txt"));
  return text;
}

// The first `bytes` of the corpus, ending at a line end.
std::string corpus_head(size_t bytes) {
  const std::string& s = shakespeare();
  return s.substr(0, s.find('\n', bytes) + 1);
}

// Training text: Shakespeare's first ~300 KB, with the BOS text at every blank line (as a data
// pipeline would put it between documents).
const std::string& training_text() {
  static const std::string text = [] {
    std::string s = corpus_head(300000), out;
    for (size_t pos = 0, nl; (nl = s.find("\n\n", pos)) != std::string::npos; pos = nl + 2)
      out += s.substr(pos, nl + 2 - pos) + kBos;
    return out;
  }();
  return text;
}
// Text training never saw.
std::string held_out() { return shakespeare().substr(shakespeare().size() - 60000); }

constexpr int32_t kVocab = 2048;

struct Trained {
  std::string dir;
  std::string path;  // tokenizer.json
  std::string json_text;
  BpeModel model;
};

const Trained& trained() {
  static const Trained t = [] {
    Trained r;
    BpeTrainer trainer({kVocab, {kBos, kEos}, 2, 2});
    trainer.add_text(training_text());
    r.model = trainer.train();
    r.json_text = bpe_tokenizer_json(r.model);
    r.dir = test::temp_dir("bpe-train");
    r.path = r.dir + "/tokenizer.json";
    write_bpe_tokenizer_json(r.model, r.path);
    return r;
  }();
  return t;
}

const Tokenizer& tok() {
  static const std::unique_ptr<Tokenizer> t = tokenizer_from_hf(trained().path);
  return *t;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// Random valid UTF-8 from many scripts: emoji with modifiers and ZWJ, combining marks, CJK
// (DeepSeek's CJK split), digit runs, every kind of white space and line break, special texts.
std::string random_text(std::mt19937& rng, size_t n_chars) {
  static const std::vector<std::pair<uint32_t, uint32_t>> kRanges = {
      {0x20, 0x7E},      {0x20, 0x20},       {0x30, 0x39},       {0x09, 0x0D},     {0xA0, 0xFF},
      {0x300, 0x36F},    {0x391, 0x3C9},     {0x400, 0x44F},     {0x5D0, 0x5EA},   {0x600, 0x6FF},
      {0x900, 0x97F},    {0xE00, 0xE5B},     {0x2000, 0x206F},   {0x3000, 0x303F}, {0x3040, 0x30FF},
      {0x4E00, 0x9FA5},  {0xAC00, 0xD7A3},   {0xFF01, 0xFF5E},   {0xFE0F, 0xFE0F}, {0x200D, 0x200D},
      {0x85, 0x85},      {0x1F300, 0x1F64F}, {0x1F3FB, 0x1F3FF}, {0xFFF0, 0xFFFD}, {0x20000, 0x20100},
      {0x31350, 0x313A0}};
  std::string s;
  for (size_t i = 0; i < n_chars; ++i) {
    const uint32_t r = rng() % 100;
    if (r < 3) {
      s += (rng() % 2) ? kBos : kEos;
    } else if (r < 8) {
      s += (rng() % 2) ? "\r\n" : "\n\n ";
    } else {
      const auto& [lo, hi] = kRanges[rng() % kRanges.size()];
      append_utf8(lo + rng() % (hi - lo + 1), &s);
    }
  }
  return s;
}

// ---- round trips --------------------------------------------------------------------------

TEST(BpeTrain, LoadsAndRoundTripsCorpus) {
  const Tokenizer& t = tok();
  EXPECT_EQ(t.n_vocab(), kVocab);
  EXPECT_EQ(t.find_token(kBos), 0);
  EXPECT_EQ(t.find_token(kEos), 1);
  EXPECT_EQ(t.token_type(0), TokenType::kControl);
  const std::string& text = training_text();
  EXPECT_EQ(t.decode(t.encode(text, true), true), text);
  for (const std::string& line : lines_of(held_out())) EXPECT_EQ(t.decode(t.encode(line, true), true), line);
}

TEST(BpeTrain, RoundTripsRandomUtf8AndRepairsInvalidBytes) {
  const Tokenizer& t = tok();
  std::mt19937 rng(7);
  for (int i = 0; i < 400; ++i) {
    const std::string s = random_text(rng, 1 + rng() % 80);
    ASSERT_EQ(t.decode(t.encode(s, true), true), s) << json(s).dump();
    // Without special parsing the special texts are ordinary text and still round-trip.
    ASSERT_EQ(t.decode(t.encode(s, false), false), s) << json(s).dump();
  }
  // Ill-formed UTF-8 comes back repaired (U+FFFD per maximal subpart), never garbled.
  for (const std::string& bad : {std::string("\x80"), std::string("ab\xff"), std::string("\xc0\x80x"),
                                 std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80"),
                                 std::string("caf\xc3"), std::string("\xe2\x82"), std::string("a\0b", 3)}) {
    std::string storage;
    const std::string expected(sanitize_utf8(bad, &storage));
    EXPECT_EQ(t.decode(t.encode(bad, true), true), expected) << json(expected).dump();
  }
}

// ---- Hugging Face tokenizers as the reference ---------------------------------------------

std::string peers_dir() {
  const char* env = std::getenv("MOE_PEERS");
  return env && *env ? env : std::string(MOE_SOURCE_DIR) + "/.cache/peers";
}

bool hf_peer_available() {
  return std::filesystem::exists(peers_dir() + "/node_modules/@anush008/tokenizers") &&
         test::run_command("node --version >/dev/null 2>&1", nullptr) == 0;
}

TEST(BpeTrain, HuggingFaceEncodesIdentically) {
  if (!hf_peer_available()) {
    GTEST_SKIP() << "node or @anush008/tokenizers missing under " << peers_dir()
                 << " (npm install --prefix .cache/peers @anush008/tokenizers)";
  }
  std::vector<std::string> texts = lines_of(held_out());
  texts.resize(std::min<size_t>(texts.size(), 600));
  const std::vector<std::string> head = lines_of(corpus_head(20000));
  texts.insert(texts.end(), head.begin(), head.end());
  std::mt19937 rng(11);
  for (int i = 0; i < 600; ++i) texts.push_back(random_text(rng, 1 + rng() % 100));
  texts.push_back(training_text().substr(0, 5000));  // multi-line, with BOS texts
  const std::string jsonl = trained().dir + "/texts.jsonl";
  {
    std::ofstream f(jsonl, std::ios::binary);
    for (const std::string& s : texts) f << json({{"text", s}}).dump() << "\n";
  }
  const std::string cmd = "MOE_PEERS=" + peers_dir() + " node " + MOE_SOURCE_DIR +
                          "/scripts/hf-tokenizer-ids.mjs " + trained().path + " " + jsonl;
  std::string out;
  ASSERT_EQ(test::run_command(cmd, &out), 0) << cmd;
  std::istringstream in(out);
  size_t n_tokens = 0;
  for (const std::string& s : texts) {
    std::string line;
    ASSERT_TRUE(std::getline(in, line)) << "the peer gave fewer lines than texts";
    std::vector<int32_t> hf;
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) hf.push_back(id);
    ASSERT_EQ(tok().encode(s, true), hf) << json(s).dump();
    n_tokens += hf.size();
  }
  EXPECT_GT(n_tokens, 20000u);
}

// ---- the vocabulary -----------------------------------------------------------------------

TEST(BpeTrain, VocabularyHasRequestedSizeAndLayout) {
  const BpeModel& m = trained().model;
  ASSERT_EQ(m.vocab.size(), static_cast<size_t>(kVocab));
  EXPECT_EQ(m.n_special, 2);
  EXPECT_EQ(m.vocab[0], kBos);
  EXPECT_EQ(m.vocab[1], kEos);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(m.vocab[2 + b], byte_to_utf8(static_cast<uint8_t>(b)));
  EXPECT_EQ(std::set<std::string>(m.vocab.begin(), m.vocab.end()).size(), m.vocab.size());
  EXPECT_GE(m.merges.size(), static_cast<size_t>(kVocab - 258));
  const std::set<std::pair<std::string, std::string>> distinct(m.merges.begin(), m.merges.end());
  EXPECT_EQ(distinct.size(), m.merges.size());
  // Each merge spells a token that exists no later than the merge (ranks follow ids).
  std::map<std::string, size_t> id_of;
  for (size_t i = 0; i < m.vocab.size(); ++i) id_of[m.vocab[i]] = i;
  size_t max_id = 257;
  for (const auto& [l, r] : m.merges) {
    ASSERT_TRUE(id_of.count(l + r)) << l << " " << r;
    ASSERT_LT(id_of[l], id_of[l + r]);
    ASSERT_LT(id_of[r], id_of[l + r]);
    ASSERT_LE(id_of[l + r], max_id + 1);
    max_id = std::max(max_id, id_of[l + r]);
  }

  const json j = json::parse(trained().json_text);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["vocab"].size(), static_cast<size_t>(kVocab));
  EXPECT_EQ(j["model"]["merges"].size(), m.merges.size());
  EXPECT_EQ(j["model"]["merges"][0], m.merges[0].first + " " + m.merges[0].second);
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["content"], kBos);
  EXPECT_EQ(j["added_tokens"][0]["id"], 0);
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["id"], 1);
  // The special text, frequent in the training text, was never learned as merges of its pieces.
  for (size_t i = 2; i < m.vocab.size(); ++i)
    EXPECT_EQ(m.vocab[i].find("\xef\xbd\x9c"), std::string::npos) << m.vocab[i];
}

TEST(BpeTrain, PreTokenizerIsDeepSeekV3s) {
  const json ours = json::parse(trained().json_text);
  const json& ds = deepseek_v3();
  EXPECT_EQ(ours["pre_tokenizer"], ds["pre_tokenizer"]);
  EXPECT_EQ(ours["decoder"], ds["decoder"]);
  EXPECT_EQ(ours["post_processor"], ds["post_processor"]);
  EXPECT_EQ(json::parse(deepseek_v3_pre_tokenizer_json()), ds["pre_tokenizer"]);
}

TEST(BpeTrain, CompressesHeldOutText) {
  const std::string text = held_out();
  const double per_byte =
      static_cast<double>(tok().encode(text, true).size()) / static_cast<double>(text.size());
  // Measured (release build, same split): 0.368 at 2048 tokens from 300 KB; 0.305 at 4096 from
  // the whole rest of the corpus; DeepSeek-V3's 128k vocabulary: 0.282. Bytes alone: 1.0.
  EXPECT_LT(per_byte, 0.38);
  EXPECT_GT(per_byte, 0.2);
}

// ---- determinism and the reference --------------------------------------------------------

TEST(BpeTrain, DeterministicAcrossRunsThreadsAndSafeCuts) {
  // Half the text, fed whole on one thread vs. in many add_text calls cut at line ends before
  // printable ASCII (where pre-tokenization cannot change) on three threads.
  const std::string text = corpus_head(80000);
  BpeTrainer one({1000, {kBos}, 2, 1});
  one.add_text(text);
  const std::string a = bpe_tokenizer_json(one.train());
  EXPECT_EQ(bpe_tokenizer_json(one.train()), a);
  BpeTrainer many({1000, {kBos}, 2, 3});
  size_t pos = 0;
  for (size_t i = 0; pos < text.size(); ++i) {
    size_t cut = text.find('\n', pos + 1000 + i * 7919 % 5000);
    while (cut != std::string::npos && cut + 1 < text.size() &&
           !std::isgraph(static_cast<unsigned char>(text[cut + 1])))
      cut = text.find('\n', cut + 1);
    const size_t end = cut == std::string::npos ? text.size() : cut + 1;
    many.add_text(std::string_view(text).substr(pos, end - pos));
    pos = end;
  }
  EXPECT_EQ(many.stats().words, one.stats().words);
  EXPECT_EQ(bpe_tokenizer_json(many.train()), a);
  // And through a file, read in blocks.
  const std::string path = trained().dir + "/half.txt";
  std::ofstream(path, std::ios::binary) << text;
  BpeTrainer file({1000, {kBos}, 2, 2});
  file.add_file(path);
  EXPECT_EQ(bpe_tokenizer_json(file.train()), a);
}

// A trainer written the slow, obvious way: recount every pair after every merge. A pair is keyed
// as left + '\0' + right, which sorts as (left, right) since byte-level texts hold no NUL.
std::vector<std::pair<std::string, std::string>> naive_merges(const std::string& text, size_t vocab_size,
                                                              int64_t min_frequency) {
  PreTokenizer pre;
  for (const json& step : deepseek_v3()["pre_tokenizer"]["pretokenizers"])
    if (step["type"] == "Split")
      pre.add_split(step["pattern"]["Regex"].get<std::string>(), Regex::Dialect::kOniguruma,
                    SplitBehavior::kIsolated);
  std::map<std::string, int64_t> counts;
  for (const std::string& w : pre.split(text)) ++counts[w];
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [w, n] : counts) {
    std::vector<std::string> syms;
    for (char c : w) syms.emplace_back(byte_to_utf8(static_cast<uint8_t>(c)));
    words.emplace_back(std::move(syms), n);
  }
  std::set<std::string> vocab;
  for (int b = 0; b < 256; ++b) vocab.emplace(byte_to_utf8(static_cast<uint8_t>(b)));
  std::vector<std::pair<std::string, std::string>> merges;
  while (vocab.size() < vocab_size) {
    std::unordered_map<std::string, int64_t> pairs;
    for (const auto& [syms, n] : words)
      for (size_t i = 0; i + 1 < syms.size(); ++i) pairs[syms[i] + '\0' + syms[i + 1]] += n;
    const std::string* best = nullptr;
    int64_t best_n = 0;
    for (const auto& [p, n] : pairs)
      if (n > best_n || (n == best_n && p < *best)) best = &p, best_n = n;
    if (!best || best_n < min_frequency) break;
    const size_t nul = best->find('\0');
    const std::string l = best->substr(0, nul), r = best->substr(nul + 1);
    merges.emplace_back(l, r);
    vocab.insert(l + r);
    for (auto& [syms, n] : words) {
      std::vector<std::string> out;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == l && syms[i + 1] == r) {
          out.push_back(l + r);
          ++i;
        } else {
          out.push_back(syms[i]);
        }
      }
      syms = std::move(out);
    }
  }
  return merges;
}

TEST(BpeTrain, MergesEqualNaiveReference) {
  // Includes runs of one repeated byte ("aaaa", "----") where merges overlap themselves.
  const std::string text = corpus_head(6000) + "aaaa aaaaa aaaaaa ------ ----- ==== 1111111 ...... \n\n\n\n";
  for (const int64_t min_frequency : {1, 3}) {
    BpeTrainer t({256 + 150, {}, min_frequency, 2});
    t.add_text(text);
    const BpeModel m = t.train();
    EXPECT_EQ(m.merges, naive_merges(text, 256 + 150, min_frequency)) << "min_frequency " << min_frequency;
  }
}

TEST(BpeTrain, MinFrequencyStopsEarlyAndTiesGoToTheSmallestTexts) {
  BpeTrainer t({1000, {}, 2, 1});
  t.add_text("abcdef ghijkl");  // every pair occurs once
  EXPECT_EQ(t.train().vocab.size(), 256u);
  BpeTrainer once({1000, {}, 1, 1});
  once.add_text("abcdef ghijkl");
  const BpeModel m = once.train();
  // All counts tie at 1: the bytewise smallest (left, right) goes first; "Ġ" (C4 A0) sorts
  // after the letters.
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"a", "b"},  {"ab", "c"},  {"abc", "d"},  {"abcd", "e"},  {"abcde", "f"},        {"g", "h"},
      {"gh", "i"}, {"ghi", "j"}, {"ghij", "k"}, {"ghijk", "l"}, {"\xc4\xa0", "ghijkl"}};
  EXPECT_EQ(m.merges, expected);
  EXPECT_EQ(m.vocab.size(), 256u + 11u);
}

TEST(BpeTrain, NeverMergesIntoASpecialText) {
  // The special token "Ġthe" is the byte-level spelling of " the", the most frequent word: the
  // pair that would spell it is skipped, else " the" would encode as the special token.
  const std::string special = "\xc4\xa0the";
  BpeTrainer t({400, {special}, 2, 1});
  t.add_text(corpus_head(30000));
  const BpeModel m = t.train();
  EXPECT_EQ(m.vocab.size(), 400u);
  EXPECT_EQ(std::count(m.vocab.begin(), m.vocab.end(), special), 1);
  for (const auto& [l, r] : m.merges) EXPECT_NE(l + r, special);
  const std::string path = trained().dir + "/special.json";
  write_bpe_tokenizer_json(m, path);
  const HfBpeTokenizer h(path);
  const std::vector<int32_t> ids = h.encode("in the end, the", true);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 0);
  EXPECT_EQ(h.decode(ids), "in the end, the");
  EXPECT_EQ(h.encode(special, true), std::vector<int32_t>{0});
}

// ---- bad input ----------------------------------------------------------------------------

TEST(BpeTrain, BadInputNamesTheProblem) {
  EXPECT_NE(error_of([] {
              BpeTrainer t({257, {"<s>", "</s>"}});
            }).find("vocab size 257 is too small"),
            std::string::npos);
  EXPECT_NE(error_of([] { BpeTrainer t({100, {}}); }).find("need 256"), std::string::npos);
  EXPECT_NE(error_of([] { BpeTrainer t({300, {""}}); }).find("must not be empty"), std::string::npos);
  EXPECT_NE(error_of([] {
              BpeTrainer t({300, {"<s>", "<s>"}});
            }).find("'<s>' is given twice"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              BpeTrainer t({300, {"a"}});
            }).find("byte-level text of byte 97"),
            std::string::npos);
  EXPECT_NE(error_of([] { BpeTrainer t({300, {"\xff"}}); }).find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error_of([] { BpeTrainer t({300, {}, 0}); }).find("min frequency"), std::string::npos);
  const std::string missing = trained().dir + "/no-such-file.txt";
  const std::string e = error_of([&] {
    BpeTrainer t({300, {}});
    t.add_file(missing);
  });
  EXPECT_NE(e.find(missing + ": cannot open (No such file or directory)"), std::string::npos) << e;
  const std::string dir_error = error_of([&] {
    BpeTrainer t({300, {}});
    t.add_file(trained().dir);
  });
  EXPECT_NE(dir_error.find(trained().dir + ": read error (Is a directory)"), std::string::npos) << dir_error;
  EXPECT_NE(error_of([] {
              write_bpe_tokenizer_json(BpeModel{}, "/nonexistent-dir/tokenizer.json");
            }).find("/nonexistent-dir/tokenizer.json: cannot create"),
            std::string::npos);
}

// ---- the command --------------------------------------------------------------------------

TEST(BpeTrain, CommandWritesTheSameFile) {
  if (!std::filesystem::exists(test::moe_binary())) GTEST_SKIP() << "no moe binary at " << test::moe_binary();
  const std::string dir = trained().dir;
  const std::string text = corpus_head(60000);
  const std::string input1 = dir + "/part1.txt", input2 = dir + "/part2.txt";
  const size_t half = text.find("\nFirst", 30000) + 1;  // a cut where pre-tokenization cannot change
  std::ofstream(input1, std::ios::binary) << text.substr(0, half);
  std::ofstream(input2, std::ios::binary) << text.substr(half);
  BpeTrainer t({600, {kBos, kEos}, 3, 1});
  t.add_text(text);
  const std::string expected = bpe_tokenizer_json(t.train());
  const std::string out = dir + "/cli.json";
  std::string log;
  ASSERT_EQ(test::run_command(test::moe_binary() + " tokenizer train --vocab-size 600 --input " + input1 +
                                  " --input " + input2 + " -o " + out + " --special '" + kBos +
                                  "' --special '" + kEos + "' --min-frequency 3 2>&1",
                              &log),
            0)
      << log;
  EXPECT_EQ(test::read_file(out), expected);
  EXPECT_NE(log.find("wrote " + out + " with 600 tokens"), std::string::npos) << log;
  ASSERT_NE(test::run_command(test::moe_binary() + " tokenizer train --vocab-size 100 --input " + input1 +
                                  " -o " + out + " 2>&1",
                              &log),
            0);
  EXPECT_NE(log.find("vocab size 100 is too small"), std::string::npos) << log;
  ASSERT_NE(test::run_command(test::moe_binary() + " tokenizer train --vocab-size 300 --input " + dir +
                                  "/missing.txt -o " + out + " 2>&1",
                              &log),
            0);
  EXPECT_NE(log.find("missing.txt: cannot open"), std::string::npos) << log;
}

}  // namespace
}  // namespace moe
