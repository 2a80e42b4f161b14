#include "train/data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "testdata.h"
#include "tokenizer/load.h"

namespace moe::train {
namespace {

namespace fs = std::filesystem;

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
}

const char* const kWords[] = {"the",   "little", "cat",  "saw", "a",      "red", "ball",
                              "and",   "ran",    "to",   "big", "tree",   "dog", "was",
                              "happy", "sun",    "girl", "boy", "played", "in",  "park"};

// A unique, ASCII, multi-sentence document: its first words name the source and index.
std::string make_doc(const std::string& source, int index, int n_words) {
  std::string s = "Story " + source + " number " + std::to_string(index) + ":";
  uint64_t x = std::hash<std::string>{}(source) + static_cast<uint64_t>(index) * 7919;
  for (int i = 0; i < n_words; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    s += std::string(" ") + kWords[(x >> 33) % std::size(kWords)];
    if (i % 9 == 8) s += ".";
  }
  return s + ".";
}

// Three sources: "alpha" (40 text files, subsampled), "beta" (20 text files in two folders) and
// "gamma" (one file of 10 lines, repeated).
struct Corpus {
  std::string dir;
  std::map<std::string, std::string> source_of;   // document text -> source
  std::map<std::string, int64_t> max_doc_tokens;  // per source, EOS included
  std::string haystack;                           // every document, \x01-separated
};

std::string mixture_json(uint64_t seed, const std::string& extra = "") {
  return R"({"seed": )" + std::to_string(seed) +
         R"(, "seq_len": 32, "val_fraction": 0.1, "shard_tokens": 1500,
    "train_tokens": 6000, )" +
         extra + R"("sources": [
      {"name": "alpha", "weight": 0.5, "format": "text", "paths": ["alpha/*.txt"]},
      {"name": "beta", "weight": 0.3, "format": "text", "paths": ["beta/**/*.txt"]},
      {"name": "gamma", "weight": 0.2, "format": "lines", "paths": ["gamma.txt"]}]})";
}

class DataPrepare : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      build_corpus();
    } catch (const std::exception& e) {
      setup_error_ = new std::string(e.what());
    }
  }
  void SetUp() override {
    if (setup_error_) FAIL() << "test corpus: " << *setup_error_;
  }

  static void build_corpus() {
    tok_ = new LoadedTokenizer(load_tokenizer(test::testdata("models/stories260K.gguf")));
    corpus_ = new Corpus;
    Corpus& c = *corpus_;
    c.dir = test::temp_dir("dataprep");
    const auto add = [&](const std::string& source, const std::string& doc) {
      c.source_of[doc] = source;
      c.haystack += doc + "\x01";
      const int64_t n = static_cast<int64_t>(tok_->tokenizer->encode(doc, false).size()) + 1;
      c.max_doc_tokens[source] = std::max(c.max_doc_tokens[source], n);
    };
    for (int i = 0; i < 40; ++i) {
      const std::string d = make_doc("alpha", i, 40 + i % 7);
      write(c.dir + "/alpha/" + std::to_string(i) + ".txt", d + "\n");
      add("alpha", d);
    }
    for (int i = 0; i < 20; ++i) {
      const std::string d = make_doc("beta", i, 30 + i % 5);
      write(c.dir + "/beta/" + (i % 2 ? "odd/" : "even/") + std::to_string(i) + ".txt", d + "\n");
      add("beta", d);
    }
    std::string lines;
    for (int i = 0; i < 10; ++i) {
      const std::string d = make_doc("gamma", i, 12);
      lines += d + "\n\n";  // blank lines between documents are skipped
      add("gamma", d);
    }
    write(c.dir + "/gamma.txt", lines);
    write(c.dir + "/mixture.json", mixture_json(1234));
    out_ = new std::string(c.dir + "/out");
    PrepareOptions opt;
    opt.threads = 2;
    result_ = new PrepareResult;
    *result_ = prepare_data(load_mixture_config(c.dir + "/mixture.json"), *tok_->tokenizer,
                            "stories260K.gguf", *out_, opt);
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    if (corpus_) fs::remove_all(corpus_->dir, ec);
    delete setup_error_;
    delete tok_;
    delete corpus_;
    delete out_;
    delete result_;
  }

  // The documents of a split in order, read from its shards and cut at EOS.
  static std::vector<std::vector<int32_t>> split_docs(const std::string& dir, const std::string& split) {
    TokenShards shards(dir, split);
    std::vector<int32_t> all(static_cast<size_t>(shards.n_tokens()));
    shards.read(0, shards.n_tokens(), all.data());
    std::vector<std::vector<int32_t>> docs(1);
    for (int32_t t : all) {
      if (t == tok_->tokenizer->eos_id()) {
        docs.emplace_back();
        continue;
      }
      docs.back().push_back(t);
    }
    EXPECT_TRUE(docs.back().empty()) << split << " does not end with EOS";
    docs.pop_back();
    return docs;
  }

  static std::string decode(const std::vector<int32_t>& ids) { return tok_->tokenizer->decode(ids); }

  static nlohmann::json manifest(const std::string& dir) {
    return nlohmann::json::parse(test::read_file(dir + "/manifest.json"));
  }

  static LoadedTokenizer* tok_;
  static Corpus* corpus_;
  static std::string* out_;
  static PrepareResult* result_;
  static std::string* setup_error_;
};

LoadedTokenizer* DataPrepare::tok_ = nullptr;
Corpus* DataPrepare::corpus_ = nullptr;
std::string* DataPrepare::out_ = nullptr;
PrepareResult* DataPrepare::result_ = nullptr;
std::string* DataPrepare::setup_error_ = nullptr;

TEST_F(DataPrepare, TrainingSharesMatchWeights) {
  // Count tokens per source from the shards themselves, attributing each decoded document.
  std::map<std::string, int64_t> tokens;
  int64_t total = 0;
  for (const auto& d : split_docs(*out_, "train")) {
    const auto it = corpus_->source_of.find(decode(d));
    ASSERT_NE(it, corpus_->source_of.end()) << "a training document is in no source: " << decode(d);
    tokens[it->second] += static_cast<int64_t>(d.size()) + 1;
    total += static_cast<int64_t>(d.size()) + 1;
  }
  const std::map<std::string, double> weight = {{"alpha", 0.5}, {"beta", 0.3}, {"gamma", 0.2}};
  const nlohmann::json m = manifest(*out_);
  EXPECT_EQ(m["train"]["n_tokens"].get<int64_t>(), total);
  for (const auto& [name, w] : weight) {
    // Whole documents are taken until the quota is met, so each source overshoots by less
    // than its largest document.
    const double quota = w * 6000;
    EXPECT_GE(tokens[name], quota) << name;
    EXPECT_LT(tokens[name], quota + corpus_->max_doc_tokens[name]) << name;
    EXPECT_NEAR(static_cast<double>(tokens[name]) / total, w, 0.03) << name;
    bool found = false;
    for (const auto& s : m["sources"])
      if (s["name"] == name) {
        found = true;
        EXPECT_EQ(s["train_tokens"].get<int64_t>(), tokens[name]) << name;
      }
    EXPECT_TRUE(found) << name;
  }
  // gamma's 10 short lines cannot fill 20% without repeating; alpha is subsampled.
  EXPECT_GT(result_->sources[2].epochs, 1.5);
  EXPECT_LT(result_->sources[0].train_documents, 40);
  EXPECT_GT(m["train"]["shards"].size(), 1u);
}

TEST_F(DataPrepare, NoDocumentInBothSplits) {
  std::set<std::string> train, val;
  for (const auto& d : split_docs(*out_, "train")) train.insert(decode(d));
  std::map<std::string, int> val_per_source;
  int64_t val_tokens = 0;
  for (const auto& d : split_docs(*out_, "val")) {
    const std::string text = decode(d);
    ASSERT_TRUE(corpus_->source_of.count(text)) << text;
    EXPECT_TRUE(val.insert(text).second) << "repeated in val: " << text;
    ++val_per_source[corpus_->source_of.at(text)];
    val_tokens += static_cast<int64_t>(d.size()) + 1;
  }
  for (const std::string& v : val) EXPECT_FALSE(train.count(v)) << "in both splits: " << v;
  for (const char* s : {"alpha", "beta", "gamma"}) EXPECT_GE(val_per_source[s], 1) << s;
  // val_fraction 0.1 of the whole: 6000 * 0.1 / 0.9 = 667 tokens, plus under a document per source.
  EXPECT_GE(val_tokens, 667);
  EXPECT_LT(val_tokens, 667 + 3 * 200);
}

TEST_F(DataPrepare, SameSeedIsByteIdenticalOtherSeedReorders) {
  PrepareOptions one_thread;
  one_thread.threads = 1;
  const MixtureConfig cfg = load_mixture_config(corpus_->dir + "/mixture.json");
  const std::string again = corpus_->dir + "/again";
  prepare_data(cfg, *tok_->tokenizer, "stories260K.gguf", again, one_thread);
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(*out_)) names.insert(e.path().filename().string());
  std::set<std::string> names_again;
  for (const auto& e : fs::directory_iterator(again)) names_again.insert(e.path().filename().string());
  EXPECT_EQ(names, names_again);
  for (const std::string& n : names)
    EXPECT_TRUE(test::read_file(*out_ + "/" + n) == test::read_file(again + "/" + n)) << n << " differs";

  MixtureConfig other = cfg;
  other.seed = 99;
  const std::string reseeded = corpus_->dir + "/reseeded";
  prepare_data(other, *tok_->tokenizer, "stories260K.gguf", reseeded, one_thread);
  std::vector<std::string> order_a, order_b;
  for (const auto& d : split_docs(*out_, "train")) order_a.push_back(decode(d));
  for (const auto& d : split_docs(reseeded, "train")) order_b.push_back(decode(d));
  EXPECT_NE(order_a, order_b);
  EXPECT_NE(test::read_file(*out_ + "/train_000.bin"), test::read_file(reseeded + "/train_000.bin"));
}

TEST_F(DataPrepare, ManifestChecksumsMatchSha256sum) {
  const nlohmann::json m = manifest(*out_);
  for (const char* split : {"train", "val"})
    for (const auto& s : m[split]["shards"]) {
      std::string out;
      const std::string file = *out_ + "/" + s["file"].get<std::string>();
      ASSERT_EQ(test::run_command("sha256sum '" + file + "'", &out), 0);
      EXPECT_EQ(out.substr(0, 64), s["sha256"].get<std::string>()) << file;
      EXPECT_EQ(fs::file_size(file), 32 + 2 * s["n_tokens"].get<uint64_t>())
          << file;  // 512-token vocab: 2 bytes
    }
  EXPECT_EQ(m["tokenizer"]["vocab_size"], 512);
  EXPECT_EQ(m["seed"], 1234);
}

TEST_F(DataPrepare, WindowsDecodeToSourceTextAndCoverAnEpoch) {
  TokenShards shards(*out_, "train");
  EXPECT_EQ(shards.vocab_size(), 512u);
  constexpr int64_t kSeq = 32;
  std::vector<int32_t> a, b;
  shards.batch(7, 3, 4, kSeq, &a);
  ASSERT_EQ(a.size(), 4u * (kSeq + 1));
  TokenShards reopened(*out_, "train");
  reopened.batch(7, 3, 4, kSeq, &b);
  EXPECT_EQ(a, b);  // a resumed run sees the same batch
  shards.batch(7, 4, 4, kSeq, &b);
  EXPECT_NE(a, b);
  for (int row = 0; row < 4; ++row) {
    std::vector<int32_t> piece;
    for (int64_t k = 0; k <= kSeq; ++k) {
      const int32_t t = a[row * (kSeq + 1) + k];
      if (t != tok_->tokenizer->eos_id()) piece.push_back(t);
      if (t == tok_->tokenizer->eos_id() || k == kSeq) {
        const std::string text = decode(piece);
        EXPECT_NE(corpus_->haystack.find(text), std::string::npos) << "not in any source: '" << text << "'";
        piece.clear();
      }
    }
  }
  // One epoch of single-window batches visits every window exactly once.
  const int64_t nw = shards.n_windows(kSeq);
  ASSERT_EQ(nw, (shards.n_tokens() - 1) / kSeq);
  std::vector<std::vector<int32_t>> seen, expected;
  for (int64_t step = 0; step < nw; ++step) {
    shards.batch(11, step, 1, kSeq, &a);
    seen.push_back(a);
    std::vector<int32_t> w(kSeq + 1);
    shards.read(step * kSeq, kSeq + 1, w.data());
    expected.push_back(w);
  }
  EXPECT_NE(seen, expected);  // shuffled
  std::sort(seen.begin(), seen.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(seen, expected);
}

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning " << parts[0];
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST_F(DataPrepare, CorruptShardsAreReportedByName) {
  const std::string dir = corpus_->dir + "/corrupt";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(*out_))
    fs::copy_file(e.path(), dir + "/" + e.path().filename().string());
  const std::string shard0 = dir + "/train_000.bin", shard1 = dir + "/train_001.bin";
  const std::string good0 = test::read_file(shard0), good1 = test::read_file(shard1);

  std::string bad = good0;
  bad[3] = 'X';
  write(shard0, bad);
  expect_error([&] { TokenShards s(dir, "train"); }, {"train_000.bin", "bad magic"});
  write(shard0, good0);

  write(shard1, good1.substr(0, good1.size() - 7));
  expect_error([&] { TokenShards s(dir, "train"); }, {"train_001.bin", "truncated"});
  write(shard1, good1.substr(0, 20));
  expect_error([&] { TokenShards s(dir, "train"); }, {"train_001.bin", "truncated"});

  bad = good1;
  bad[24] = static_cast<char>(bad[24] + 1);  // n_tokens no longer matches the size
  write(shard1, bad);
  expect_error([&] { TokenShards s(dir, "train"); }, {"train_001.bin"});

  bad = good1;
  bad[32] = '\xff';
  bad[33] = '\xff';  // token 65535 in a 512-token vocabulary
  write(shard1, bad);
  TokenShards s(dir, "train");
  std::vector<int32_t> all(static_cast<size_t>(s.n_tokens()));
  expect_error([&] { s.read(0, s.n_tokens(), all.data()); }, {"train_001.bin", "65535", "vocabulary"});
  write(shard1, good1);
  expect_error([&] { TokenShards t(dir, "test"); }, {"train or val"});
  expect_error([&] { TokenShards t(corpus_->dir + "/alpha", "train"); }, {"manifest.json"});
}

TEST_F(DataPrepare, ConfigErrorsNameTheKey) {
  const std::string good = mixture_json(1);
  const auto parse = [](const std::string& text) { parse_mixture_config(text, "mixture.json", ""); };
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  EXPECT_NO_THROW(parse(good));
  expect_error([&] { parse(with("\"weight\": 0.2", "\"weight\": 0")); },
               {"mixture.json: sources[2].weight: must be > 0"});
  expect_error([&] { parse(with("\"weight\": 0.3", "\"weight\": \"a\"")); },
               {"mixture.json: sources[1].weight:"});
  expect_error([&] { parse(with("\"seed\": 1,", "")); }, {"mixture.json: seed: missing"});
  expect_error([&] { parse(with("\"seed\": 1", "\"seed\": -1")); }, {"mixture.json: seed:"});
  expect_error([&] { parse(with("\"seq_len\": 32", "\"seq_len\": 0")); },
               {"mixture.json: seq_len: must be >= 1"});
  expect_error([&] { parse(with("\"val_fraction\": 0.1", "\"val_fraction\": 1")); },
               {"mixture.json: val_fraction:"});
  expect_error([&] { parse(with("\"shard_tokens\": 1500", "\"shard_tokens\": 1.5")); },
               {"mixture.json: shard_tokens: must be an integer"});
  expect_error([&] { parse(with("\"seq_len\"", "\"seqlen\"")); }, {"mixture.json: seqlen: unknown key"});
  expect_error([&] { parse(with("\"format\": \"lines\"", "\"format\": \"csv\"")); },
               {"mixture.json: sources[2].format:", "csv"});
  expect_error([&] { parse(with("\"paths\": [\"alpha/*.txt\"]", "\"paths\": []")); },
               {"mixture.json: sources[0].paths:"});
  expect_error([&] { parse(with("\"name\": \"beta\"", "\"name\": \"alpha\"")); },
               {"mixture.json: sources[1].name:", "alpha"});
  expect_error([&] { parse(with("\"format\": \"text\"", "\"formt\": \"text\"")); },
               {"mixture.json: sources[0].formt: unknown key"});
  expect_error(
      [&] {
        parse(with("\"format\": \"lines\", \"paths\": [\"gamma.txt\"]",
                   "\"format\": \"synthetic-arithmetic\""));
      },
      {"mixture.json: sources[2].documents: missing"});
  expect_error(
      [&] { parse(with("\"format\": \"lines\"", "\"format\": \"synthetic-arithmetic\", \"documents\": 5")); },
      {"mixture.json: sources[2].paths: not allowed"});
  expect_error([&] { parse("{\"seed\": 1,"); }, {"mixture.json: invalid JSON"});
  expect_error([&] { parse(R"({"seed": 1, "seq_len": 4, "sources": []})"); },
               {"mixture.json: sources: must be a non-empty array"});
  expect_error(
      [&] {
        parse(with("\"gamma.txt\"", "{\"glob\": \"gamma.txt\", \"format\": \"synthetic-arithmetic\"}"));
      },
      {"mixture.json: sources[2].paths[0].format:"});
  expect_error([&] { parse(with("\"gamma.txt\"", "{\"pattern\": \"gamma.txt\"}")); },
               {"mixture.json: sources[2].paths[0].pattern: unknown key"});
}

TEST_F(DataPrepare, MissingAndEmptySourcesAreNamed) {
  const std::string d = corpus_->dir;
  write(d + "/blank/1.txt", " \n\n\t\n");
  write(d + "/m1.json", mixture_json(1).replace(mixture_json(1).find("beta/**/*.txt"), 13, "nowhere/*.txt"));
  expect_error([&] { prepare_data(load_mixture_config(d + "/m1.json"), *tok_->tokenizer, "t", d + "/o1"); },
               {"source 'beta'", "nowhere/*.txt", "matches no files"});
  write(d + "/m2.json", mixture_json(1).replace(mixture_json(1).find("beta/**/*.txt"), 13, "blank/*.txt"));
  expect_error([&] { prepare_data(load_mixture_config(d + "/m2.json"), *tok_->tokenizer, "t", d + "/o2"); },
               {"source 'beta' has no text"});
}

TEST_F(DataPrepare, WithoutTrainTokensTheScarcestSourceSetsTheSize) {
  std::string m = mixture_json(8);
  m.replace(m.find("\"train_tokens\": 6000,"), 21, "");
  write(corpus_->dir + "/auto.json", m);
  const std::string out = corpus_->dir + "/auto";
  const PrepareResult r =
      prepare_data(load_mixture_config(corpus_->dir + "/auto.json"), *tok_->tokenizer, "t", out);
  std::set<std::string> train_docs;
  std::map<std::string, int> per_source;
  for (const auto& d : split_docs(out, "train")) {
    EXPECT_TRUE(train_docs.insert(decode(d)).second) << "repeated: " << decode(d);
    ++per_source[corpus_->source_of.at(decode(d))];
  }
  int gamma_val = 0;
  for (const auto& d : split_docs(out, "val")) gamma_val += corpus_->source_of.at(decode(d)) == "gamma";
  // gamma, 10 short lines at 20%, is the scarcest: all of it is used, split between val and train.
  EXPECT_EQ(per_source["gamma"] + gamma_val, 10);
  EXPECT_LT(per_source["alpha"], 40);
  for (const SourceStats& s : r.sources) EXPECT_DOUBLE_EQ(s.epochs, 1.0) << s.name;
}

TEST_F(DataPrepare, ExcludedFilesAreLeftOut) {
  const std::string d = corpus_->dir;
  const auto with_exclude = [&](const std::string& exclude) {
    std::string m = mixture_json(5);
    const std::string key = "\"paths\": [\"beta/**/*.txt\"]";
    return m.replace(m.find(key), key.size(), key + ", \"exclude\": [" + exclude + "]");
  };
  write(d + "/ex1.json", with_exclude("\"beta/odd/*.txt\", \"beta/none/*\""));
  const PrepareResult r =
      prepare_data(load_mixture_config(d + "/ex1.json"), *tok_->tokenizer, "t", d + "/ex1", PrepareOptions{});
  EXPECT_EQ(r.sources[1].files, 10);
  for (const auto& doc : split_docs(d + "/ex1", "train")) {
    const std::string text = decode(doc);
    if (corpus_->source_of.at(text) != "beta") continue;
    const int index = std::stoi(text.substr(std::string("Story beta number ").size()));
    EXPECT_EQ(index % 2, 0) << "from an excluded file: " << text;
  }
  write(d + "/ex2.json", with_exclude("\"beta/**\""));
  expect_error([&] { prepare_data(load_mixture_config(d + "/ex2.json"), *tok_->tokenizer, "t", d + "/ex2"); },
               {"source 'beta'", "excluded"});
}

TEST_F(DataPrepare, SyntheticArithmeticIsCorrect) {
  int n_arith = 0, n_reverse = 0, n_larger = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string doc = synthetic_document(42, i);
    EXPECT_EQ(doc, synthetic_document(42, i));
    std::vector<std::string> lines;
    std::istringstream in(doc);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    for (size_t k = 0; k < lines.size(); ++k) {
      const std::string& l = lines[k];
      EXPECT_TRUE(l.rfind("What is ", 0) == 0 || l.rfind("Instruction: ", 0) == 0 ||
                  l.rfind("Response: ", 0) == 0)
          << l;
      const std::string next = k + 1 < lines.size() ? lines[k + 1] : "";
      long long a = 0, b = 0, r = 0;
      char op = 0, word[64] = {}, tail[8] = {};
      if (std::sscanf(l.c_str(), "What is %lld %c %lld? %lld%7s", &a, &op, &b, &r, tail) == 5) {
        ++n_arith;
        EXPECT_EQ(std::string(tail), ".") << l;
        EXPECT_EQ(r, op == '+' ? a + b : op == '-' ? a - b : a * b) << l;
        EXPECT_TRUE(op == '+' || op == '-' || op == '*') << l;
      } else if (std::sscanf(l.c_str(), "Instruction: Write the word \"%63[a-z]\" backwards.", word) == 1) {
        ++n_reverse;
        const std::string w = word;
        EXPECT_EQ(next, "Response: " + std::string(w.rbegin(), w.rend())) << l;
      } else if (std::sscanf(l.c_str(), "Instruction: Which number is larger, %lld or %lld?", &a, &b) == 2) {
        ++n_larger;
        EXPECT_NE(a, b);
        EXPECT_EQ(next, "Response: " + std::to_string(std::max(a, b))) << l;
      }
    }
  }
  EXPECT_GT(n_arith, 300);
  EXPECT_GT(n_reverse, 20);
  EXPECT_GT(n_larger, 20);
  EXPECT_NE(synthetic_document(42, 0), synthetic_document(43, 0));
}

TEST_F(DataPrepare, GlobIsRecursiveAndSorted) {
  const std::string d = corpus_->dir + "/glob";
  for (const char* f : {"b.txt", "a.txt", "x/c.txt", "x/y/d.txt", "x/y/e.md", ".hidden.txt", "z/.h/f.txt"})
    write(d + "/" + f, "x");
  EXPECT_EQ(expand_glob(d + "/**/*.txt"),
            (std::vector<std::string>{d + "/a.txt", d + "/b.txt", d + "/x/c.txt", d + "/x/y/d.txt"}));
  EXPECT_EQ(expand_glob(d + "/x/*/*.?d"), (std::vector<std::string>{d + "/x/y/e.md"}));
  EXPECT_EQ(expand_glob(d + "/[ab].txt"), (std::vector<std::string>{d + "/a.txt", d + "/b.txt"}));
  EXPECT_TRUE(expand_glob(d + "/nothing/*.txt").empty());
}

TEST_F(DataPrepare, ManPagesAreStrippedAndGzipRead) {
  const std::string page =
      ".\\\" comment\n.TH LS \"1\" \"2022\"\n.SH NAME\nls \\- list directory contents\n.SH SYNOPSIS\n.B ls\n"
      "[\\fI\\,OPTION\\/\\fR]...\n.SH DESCRIPTION\n.PP\nList information about the FILEs.\n"
      ".TP\n\\fB\\-a\\fR, \\fB\\-\\-all\\fR\ndo not ignore entries starting with .\n.BR gzip (1)\n";
  const std::string expected =
      "NAME\n\nls - list directory contents\n\nSYNOPSIS\n\nls [OPTION]...\n\nDESCRIPTION\n\n"
      "List information about the FILEs.\n\n-a, --all do not ignore entries starting with . gzip(1)";
  EXPECT_EQ(strip_roff(page), expected);
  const std::string path = corpus_->dir + "/ls.1";
  write(path, page);
  ASSERT_EQ(test::run_command("gzip -f '" + path + "'", nullptr), 0);
  EXPECT_EQ(read_documents(path + ".gz", SourceFormat::kMan, 1 << 20), std::vector<std::string>{expected});
  write(corpus_->dir + "/broken.gz", "not gzip");
  expect_error([&] { read_documents(corpus_->dir + "/broken.gz", SourceFormat::kText, 1 << 20); },
               {"broken.gz", "gzip"});
}

TEST_F(DataPrepare, SplitDocumentsKeepsParagraphsAndCleansUtf8) {
  EXPECT_EQ(split_documents("one\r\n\n  \ntwo\nthree\n", SourceFormat::kLines, 100),
            (std::vector<std::string>{"one", "two", "three"}));
  const std::string para1(40, 'a'), para2(40, 'b'), para3(10, 'c');
  EXPECT_EQ(split_documents(para1 + "\n\n" + para2 + "\n\n" + para3 + "\n", SourceFormat::kText, 64),
            (std::vector<std::string>{para1, para2 + "\n\n" + para3}));
  for (const std::string& d : split_documents(std::string(200, 'x'), SourceFormat::kText, 64))
    EXPECT_LE(d.size(), 64u);
  EXPECT_EQ(split_documents("a\xff"
                            "b\xc3\xa9",
                            SourceFormat::kText, 64),
            std::vector<std::string>{"a\xEF\xBF\xBD"
                                     "b\xc3\xa9"});
}

}  // namespace
}  // namespace moe::train
