// `moe data prepare`: sampling the sources to their weights and writing the shards.
#include "train/data.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "core/thread_pool.h"
#include "tokenizer/tokenizer.h"

namespace moe::train {

namespace fs = std::filesystem;
using OrderedJson = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Sampling

namespace {

uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001B3ull;
  return h;
}

// Fisher-Yates with our own generator: std::shuffle's output differs between standard libraries.
template <class T>
void shuffle(std::vector<T>* v, uint64_t key) {
  uint64_t state = mix64(key);
  for (size_t i = v->size(); i > 1; --i) {
    state = mix64(state);
    const size_t j = static_cast<size_t>((static_cast<unsigned __int128>(state) * i) >> 64);
    std::swap((*v)[i - 1], (*v)[j]);
  }
}

using Doc = std::vector<int32_t>;

// One source's tokenized documents in its shuffled order, read and tokenized a batch at a time
// so that a subsampled source is only read as far as needed.
class SourceStream {
 public:
  SourceStream(const DataSource& src, const MixtureConfig& cfg, const Tokenizer& tok, ThreadPool& pool)
      : src_(src), cfg_(cfg), tok_(tok), pool_(pool), key_(mix64(cfg.seed ^ fnv1a(src.name))) {
    for (size_t i = 0; i < src.paths.size(); ++i) {
      const std::vector<std::string> found = expand_glob(src.paths[i].glob);
      MOE_CHECK(!found.empty(), "source '", src.name, "': paths[", i, "] '", src.paths[i].glob,
                "' matches no files");
      for (const std::string& f : found) files_.push_back({f, src.paths[i].format});
    }
    std::set<std::string> excluded;
    for (const std::string& pattern : src.exclude)
      for (std::string& f : expand_glob(pattern)) excluded.insert(std::move(f));
    std::erase_if(files_, [&](const auto& f) { return excluded.count(f.first) > 0; });
    MOE_CHECK(src.paths.empty() || !files_.empty(), "source '", src.name,
              "': every file its paths match is excluded");
    // A file two patterns match is read once, the way the first pattern says.
    std::stable_sort(files_.begin(), files_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    files_.erase(std::unique(files_.begin(), files_.end(),
                             [](const auto& a, const auto& b) { return a.first == b.first; }),
                 files_.end());
    shuffle(&files_, key_);
  }

  int64_t files() const { return static_cast<int64_t>(files_.size()); }
  const std::vector<Doc>& docs() const { return docs_; }

  // True when document i exists (reading further as needed).
  bool has(size_t i) {
    while (docs_.size() <= i && !exhausted()) fill();
    return i < docs_.size();
  }

 private:
  bool exhausted() const {
    return src_.format == SourceFormat::kSyntheticArithmetic ? next_ >= static_cast<size_t>(src_.documents)
                                                             : next_ >= files_.size();
  }

  Doc tokenize(const std::string& text) const {
    Doc d = tok_.encode(text, /*parse_special=*/false);
    d.push_back(tok_.eos_id());
    return d;
  }

  void fill() {
    const bool synthetic = src_.format == SourceFormat::kSyntheticArithmetic;
    const size_t total = synthetic ? static_cast<size_t>(src_.documents) : files_.size();
    const size_t n = std::min(total - next_, static_cast<size_t>(synthetic ? 1024 : 16 * pool_.size()));
    std::vector<std::vector<Doc>> out(n);
    std::vector<std::string> errors(n);
    pool_.run(static_cast<int64_t>(n), [&](int, int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        try {
          if (synthetic) {
            out[k].push_back(tokenize(synthetic_document(key_, static_cast<int64_t>(next_ + k))));
            continue;
          }
          const auto& [path, format] = files_[next_ + k];
          for (const std::string& text :
               read_documents(path, format, static_cast<size_t>(cfg_.max_document_bytes)))
            out[k].push_back(tokenize(text));
        } catch (const std::exception& e) {
          errors[k] = e.what();
        }
      }
    });
    for (size_t k = 0; k < n; ++k) {
      MOE_CHECK(errors[k].empty(), "source '", src_.name, "': ", errors[k]);
      for (Doc& d : out[k]) docs_.push_back(std::move(d));
    }
    next_ += n;
  }

  const DataSource& src_;
  const MixtureConfig& cfg_;
  const Tokenizer& tok_;
  ThreadPool& pool_;
  uint64_t key_;
  std::vector<std::pair<std::string, SourceFormat>> files_;
  size_t next_ = 0;  // next file (or synthetic index) to read
  std::vector<Doc> docs_;
};

struct Selection {
  std::vector<size_t> val;    // document indices into the stream
  std::vector<size_t> train;  // with repeats, in the order taken
  int64_t train_distinct_tokens = 0;
};

int64_t doc_tokens(const SourceStream& s, const std::vector<size_t>& idx) {
  int64_t n = 0;
  for (size_t i : idx) n += static_cast<int64_t>(s.docs()[i].size());
  return n;
}

// Validation first (never a source's last document), then training documents in stream order
// until the quota is met; with repeat, a source that runs out is repeated in freshly shuffled
// passes.
Selection select(SourceStream& s, const DataSource& src, double val_quota, double train_quota, bool repeat,
                 uint64_t key) {
  Selection sel;
  size_t i = 0;
  double val = 0;
  while (val < val_quota && s.has(i + 1)) {
    sel.val.push_back(i);
    val += static_cast<double>(s.docs()[i++].size());
  }
  double train = 0;
  while (train < train_quota && s.has(i)) {
    sel.train.push_back(i);
    train += static_cast<double>(s.docs()[i++].size());
  }
  MOE_CHECK(!sel.train.empty() || train_quota <= 0, "source '", src.name, "' has no text (", sel.val.size(),
            " documents)");
  sel.train_distinct_tokens = static_cast<int64_t>(train);
  const std::vector<size_t> pool = sel.train;
  for (uint64_t epoch = 1; repeat && train < train_quota; ++epoch) {
    std::vector<size_t> order = pool;
    shuffle(&order, key ^ mix64(epoch));
    for (size_t k = 0; k < order.size() && train < train_quota; ++k) {
      sel.train.push_back(order[k]);
      train += static_cast<double>(s.docs()[order[k]].size());
    }
  }
  return sel;
}

// ---------------------------------------------------------------------------------------------
// Writing

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Streams one split's tokens into shard files of at most shard_tokens tokens each.
class SplitWriter {
 public:
  SplitWriter(const std::string& dir, const std::string& split, int64_t total, int64_t shard_tokens,
              uint32_t vocab)
      : dir_(dir),
        split_(split),
        remaining_(total),
        shard_tokens_(shard_tokens),
        vocab_(vocab),
        width_(vocab <= 65536 ? 2 : 4) {}

  void add(const Doc& d) {
    for (int32_t t : d) {
      MOE_CHECK(t >= 0 && static_cast<uint32_t>(t) < vocab_, "the tokenizer produced id ", t,
                ", outside its vocabulary of ", vocab_);
      if (!file_) open_next();
      uint8_t b[4];
      put_u32(b, static_cast<uint32_t>(t));
      buf_.insert(buf_.end(), b, b + width_);
      if (buf_.size() >= (1u << 20)) flush_buf();
      if (--left_in_shard_ == 0) close_shard();
    }
  }

  OrderedJson finish() {
    MOE_CHECK(!file_ && remaining_ == 0, split_, ": internal error: token count mismatch");
    OrderedJson j;
    j["n_tokens"] = written_;
    j["shards"] = shards_;
    return j;
  }
  const std::vector<std::string>& names() const { return names_; }

 private:
  void open_next() {
    char name[64];
    std::snprintf(name, sizeof name, "%s_%03zu.bin", split_.c_str(), names_.size());
    names_.push_back(name);
    file_ = std::make_unique<AtomicFile>((fs::path(dir_) / name).string());
    md_.reset(EVP_MD_CTX_new());
    MOE_CHECK(md_ && EVP_DigestInit_ex(md_.get(), EVP_sha256(), nullptr) == 1, "sha256 init failed");
    left_in_shard_ = std::min(shard_tokens_, remaining_);
    shard_n_ = left_in_shard_;
    uint8_t h[kShardHeaderBytes] = {};
    std::memcpy(h, kShardMagic, 8);
    put_u32(h + 8, kShardVersion);
    put_u32(h + 12, vocab_);
    put_u32(h + 16, width_);
    put_u64(h + 24, static_cast<uint64_t>(shard_n_));
    buf_.assign(h, h + kShardHeaderBytes);
  }

  void flush_buf() {
    file_->write(buf_.data(), buf_.size());
    MOE_CHECK(EVP_DigestUpdate(md_.get(), buf_.data(), buf_.size()) == 1, "sha256 update failed");
    buf_.clear();
  }

  void close_shard() {
    flush_buf();
    file_->commit();
    file_.reset();
    uint8_t digest[32];
    unsigned len = 0;
    MOE_CHECK(EVP_DigestFinal_ex(md_.get(), digest, &len) == 1 && len == 32, "sha256 final failed");
    static const char* kHex = "0123456789abcdef";
    std::string hex;
    for (uint8_t b : digest) hex += {kHex[b >> 4], kHex[b & 15]};
    shards_.push_back({{"file", names_.back()}, {"n_tokens", shard_n_}, {"sha256", hex}});
    written_ += shard_n_;
    remaining_ -= shard_n_;
  }

  struct MdFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::string dir_, split_;
  int64_t remaining_, shard_tokens_;
  uint32_t vocab_, width_;
  std::unique_ptr<AtomicFile> file_;
  std::unique_ptr<EVP_MD_CTX, MdFree> md_;
  std::vector<uint8_t> buf_;
  int64_t left_in_shard_ = 0, shard_n_ = 0, written_ = 0;
  OrderedJson shards_ = OrderedJson::array();
  std::vector<std::string> names_;
};

// "train_NNN.bin" or "val_NNN.bin".
bool is_shard_name(const std::string& name) {
  const size_t us = name.find('_');
  if (us == std::string::npos || (name.compare(0, us, "train") != 0 && name.compare(0, us, "val") != 0))
    return false;
  if (name.size() < us + 1 + 4 || name.compare(name.size() - 4, 4, ".bin") != 0) return false;
  const std::string digits = name.substr(us + 1, name.size() - 4 - us - 1);
  return !digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos;
}

struct Ref {
  size_t source;
  size_t doc;
};

OrderedJson write_split(const std::string& dir, const std::string& split, const std::vector<Ref>& refs,
                        const std::vector<std::unique_ptr<SourceStream>>& streams, int64_t shard_tokens,
                        uint32_t vocab, std::vector<std::string>* names) {
  int64_t total = 0;
  for (const Ref& r : refs) total += static_cast<int64_t>(streams[r.source]->docs()[r.doc].size());
  SplitWriter w(dir, split, total, shard_tokens, vocab);
  for (const Ref& r : refs) w.add(streams[r.source]->docs()[r.doc]);
  OrderedJson j = w.finish();
  j["n_documents"] = refs.size();
  *names = w.names();
  return j;
}

}  // namespace

PrepareResult prepare_data(const MixtureConfig& cfg, const Tokenizer& tok, const std::string& tokenizer_path,
                           const std::string& out_dir, const PrepareOptions& opt) {
  const auto log = [&](const std::string& s) {
    if (opt.progress) opt.progress(s);
  };
  MOE_CHECK(!cfg.sources.empty(), "data prepare: no sources");
  MOE_CHECK(tok.eos_id() >= 0 && tok.eos_id() < tok.n_vocab(), tokenizer_path,
            ": the tokenizer has no EOS token to end documents with");
  const uint32_t vocab = static_cast<uint32_t>(tok.n_vocab());
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  MOE_CHECK(fs::is_directory(out_dir, ec), out_dir, ": cannot create the output directory");

  ThreadPool pool(opt.threads);
  double weight_sum = 0;
  for (const DataSource& s : cfg.sources) weight_sum += s.weight;
  std::vector<std::unique_ptr<SourceStream>> streams;
  for (const DataSource& s : cfg.sources) {
    streams.push_back(std::make_unique<SourceStream>(s, cfg, tok, pool));
    if (s.format != SourceFormat::kSyntheticArithmetic)
      log(str_cat(s.name, ": ", streams.back()->files(), " files"));
  }

  int64_t train_target = cfg.train_tokens;
  if (train_target == 0) {
    // Every source in full; the scarcest (for its weight) sets the size of the whole mixture.
    double budget = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < streams.size(); ++i) {
      while (streams[i]->has(streams[i]->docs().size())) {
      }
      int64_t n = 0;
      for (const Doc& d : streams[i]->docs()) n += static_cast<int64_t>(d.size());
      MOE_CHECK(n > 0, "source '", cfg.sources[i].name, "' has no text in its ", streams[i]->files(),
                " files");
      log(str_cat(cfg.sources[i].name, ": ", streams[i]->docs().size(), " documents, ", n, " tokens"));
      budget = std::min(budget, static_cast<double>(n) / (cfg.sources[i].weight / weight_sum));
    }
    train_target = static_cast<int64_t>(budget * (1 - cfg.val_fraction));
  }
  const double val_target = static_cast<double>(train_target) * cfg.val_fraction / (1 - cfg.val_fraction);

  PrepareResult result;
  std::vector<Ref> train_refs, val_refs;
  for (size_t i = 0; i < streams.size(); ++i) {
    const DataSource& src = cfg.sources[i];
    SourceStream& s = *streams[i];
    MOE_CHECK(s.has(0), "source '", src.name, "' has no text in its ", s.files(), " files");
    const double share = src.weight / weight_sum;
    // Sized by the scarcest source, a mixture never repeats it: what validation took is simply
    // missing from its training share.
    const Selection sel = select(s, src, share * val_target, share * static_cast<double>(train_target),
                                 cfg.train_tokens > 0, mix64(cfg.seed ^ fnv1a(src.name) ^ 0x7261696eull));
    SourceStats st;
    st.name = src.name;
    st.share = share;
    st.files = s.files();
    st.documents_read = static_cast<int64_t>(s.docs().size());
    st.val_documents = static_cast<int64_t>(sel.val.size());
    st.train_documents = static_cast<int64_t>(std::set<size_t>(sel.train.begin(), sel.train.end()).size());
    st.train_tokens = doc_tokens(s, sel.train);
    st.val_tokens = doc_tokens(s, sel.val);
    st.epochs =
        sel.train_distinct_tokens > 0 ? static_cast<double>(st.train_tokens) / sel.train_distinct_tokens : 0;
    for (size_t d : sel.train) train_refs.push_back({i, d});
    for (size_t d : sel.val) val_refs.push_back({i, d});
    result.train_tokens += st.train_tokens;
    result.val_tokens += st.val_tokens;
    log(str_cat(src.name, ": ", st.train_tokens, " training tokens from ", st.train_documents, " documents (",
                st.epochs, " epochs), ", st.val_tokens, " validation tokens from ", st.val_documents));
    result.sources.push_back(st);
  }
  shuffle(&train_refs, mix64(cfg.seed ^ 0x747261696e6f7264ull));
  shuffle(&val_refs, mix64(cfg.seed ^ 0x76616c6f72646572ull));
  MOE_CHECK(result.train_tokens > cfg.seq_len, "the training split holds ", result.train_tokens,
            " tokens, fewer than one window of seq_len + 1 = ", cfg.seq_len + 1);
  MOE_CHECK(cfg.val_fraction == 0 || result.val_tokens > cfg.seq_len, "the validation split holds ",
            result.val_tokens, " tokens, fewer than one window of seq_len + 1 = ", cfg.seq_len + 1,
            "; raise val_fraction or train_tokens");

  OrderedJson m;
  m["format"] = std::string(kShardMagic, 8);
  m["version"] = kShardVersion;
  m["seed"] = cfg.seed;
  m["seq_len"] = cfg.seq_len;
  m["val_fraction"] = cfg.val_fraction;
  m["shard_tokens"] = cfg.shard_tokens;
  m["train_tokens_requested"] = cfg.train_tokens;
  m["max_document_bytes"] = cfg.max_document_bytes;
  m["tokenizer"] = {{"path", tokenizer_path},
                    {"vocab_size", vocab},
                    {"eos_id", tok.eos_id()},
                    {"token_bytes", vocab <= 65536 ? 2 : 4}};
  OrderedJson sources = OrderedJson::array();
  for (size_t i = 0; i < cfg.sources.size(); ++i) {
    const DataSource& src = cfg.sources[i];
    const SourceStats& st = result.sources[i];
    OrderedJson j;
    j["name"] = src.name;
    j["format"] = source_format_name(src.format);
    j["weight"] = src.weight;
    j["share"] = st.share;
    if (src.format == SourceFormat::kSyntheticArithmetic) {
      j["documents"] = src.documents;
    } else {
      for (const SourcePath& p : src.paths)
        j["paths"].push_back(p.format == src.format
                                 ? OrderedJson(p.glob)
                                 : OrderedJson{{"glob", p.glob}, {"format", source_format_name(p.format)}});
      if (!src.exclude.empty()) j["exclude"] = src.exclude;
    }
    j["files"] = st.files;
    j["documents_read"] = st.documents_read;
    j["train_documents"] = st.train_documents;
    j["val_documents"] = st.val_documents;
    j["train_tokens"] = st.train_tokens;
    j["val_tokens"] = st.val_tokens;
    j["train_share_actual"] = static_cast<double>(st.train_tokens) / static_cast<double>(result.train_tokens);
    j["epochs"] = st.epochs;
    sources.push_back(j);
  }
  m["sources"] = sources;
  log(str_cat("writing ", result.train_tokens, " training and ", result.val_tokens, " validation tokens to ",
              out_dir));
  m["train"] =
      write_split(out_dir, "train", train_refs, streams, cfg.shard_tokens, vocab, &result.train_shards);
  m["val"] = write_split(out_dir, "val", val_refs, streams, cfg.shard_tokens, vocab, &result.val_shards);
  const std::string text = m.dump(2) + "\n";
  write_file_atomic((fs::path(out_dir) / "manifest.json").string(), text.data(), text.size());

  // Shards of an earlier, larger run would otherwise linger beside the new manifest.
  std::set<std::string> keep(result.train_shards.begin(), result.train_shards.end());
  keep.insert(result.val_shards.begin(), result.val_shards.end());
  for (const fs::directory_entry& e : fs::directory_iterator(out_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (is_shard_name(name) && !keep.count(name)) fs::remove(e.path(), ec);
  }
  return result;
}

}  // namespace moe::train
