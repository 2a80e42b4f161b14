// Training data. `moe data prepare` turns a weighted mixture of text sources into token shards;
// TokenShards reads them back as [batch, seq_len + 1] windows for the trainer.
//
// Shard file (OUTDIR/train_000.bin, ..., OUTDIR/val_000.bin), all integers little-endian:
//   0  char[8]  "MOETOK01"
//   8  uint32   version (kShardVersion)
//   12 uint32   vocabulary size
//   16 uint32   token width in bytes: 2 when the vocabulary has at most 65536 entries, else 4
//   20 uint32   reserved, 0
//   24 uint64   n_tokens
//   32 tokens   n_tokens * width bytes; the file ends there
// A split is the concatenation of its shards in manifest order; every document in it ends with
// the tokenizer's EOS id. OUTDIR/manifest.json (written last) lists the shards with their token
// counts and SHA-256, and records the sources, weights, tokens taken per source, seed and
// tokenizer.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moe {
class Tokenizer;
class MappedFile;
}  // namespace moe

namespace moe::train {

enum class SourceFormat {
  kText,                 // a file is a document (split at paragraphs when longer than the cap)
  kLines,                // every non-blank line is a document
  kPython,               // source code, kept verbatim; a file is a document (split like text)
  kMan,                  // roff man pages (.gz allowed), macros stripped crudely; a page is a document
  kSyntheticArithmetic,  // generated arithmetic and instruction/response pairs; no files
};

// "text", "lines", "python", "man", "synthetic-arithmetic".
const char* source_format_name(SourceFormat f);

// A glob pattern ("*", "?", "[...]" within a component; "**" for any depth) and how to read the
// files it matches. In JSON either "pattern" (the source's format) or
// {"glob": "pattern", "format": "man"}, so that one source can mix formats.
struct SourcePath {
  std::string glob;  // relative ones are resolved against the directory of the mixture file
  SourceFormat format = SourceFormat::kText;
};

struct DataSource {
  std::string name;   // unique among sources
  double weight = 0;  // > 0; shares are weight / sum of weights
  SourceFormat format = SourceFormat::kText;
  std::vector<SourcePath> paths;  // files ending in .gz are decompressed
  // Glob patterns of files to leave out ("exclude" in JSON); one that matches nothing is no error.
  std::vector<std::string> exclude;
  int64_t documents = 0;  // synthetic sources: how many documents to generate
};

struct MixtureConfig {
  // Keys "seed", "seq_len" and "sources" are required; the others default as below.
  uint64_t seed = 0;
  int64_t seq_len = 0;  // recorded for the trainer; each split must hold a window of seq_len + 1
  // [0, 1): validation's share of all output tokens. Each source contributes to validation in
  // proportion to its weight, but never its last document.
  double val_fraction = 0.01;
  int64_t shard_tokens = int64_t{1} << 24;  // per shard file (the last one of a split may hold fewer)
  // Training tokens to produce. 0: as many as the scarcest source (relative to its weight) can
  // give without repeating a document, which needs every source tokenized in full.
  int64_t train_tokens = 0;
  int64_t max_document_bytes = 32768;  // longer files are split at paragraph or line breaks
  std::vector<DataSource> sources;
};

// Strict parsing: unknown keys, wrong types and out-of-range values throw moe::Error naming
// origin and the key path, e.g. "mixture.json: sources[2].weight: must be > 0".
MixtureConfig parse_mixture_config(std::string_view json_text, const std::string& origin,
                                   const std::string& base_dir);
MixtureConfig load_mixture_config(const std::string& path);

// The regular files a pattern matches, sorted bytewise; "*" and "?" do not match a leading dot.
// Directory symlinks are not followed under "**".
std::vector<std::string> expand_glob(const std::string& pattern);

// Plain text of a roff man page: requests and escapes removed, font macros' arguments kept.
std::string strip_roff(std::string_view roff);

// Document `index` of the synthetic-arithmetic generator: lines such as "What is 37 + 45? 82."
// and "Instruction: ...\nResponse: ..." pairs; a pure function of (seed, index).
std::string synthetic_document(uint64_t seed, int64_t index);

// The documents a file's text makes under a format (after roff stripping for kMan): text,
// python and man split at blank lines (then at line breaks, then anywhere on a UTF-8 boundary)
// into pieces of at most max_bytes; lines gives one per non-blank line. Invalid UTF-8 becomes
// U+FFFD, CRLF becomes LF, whitespace-only documents are dropped.
std::vector<std::string> split_documents(std::string_view text, SourceFormat format, size_t max_bytes);

// The documents of one file: read whole (at most 1 GiB, a .gz decompressed through `gzip -dc`),
// roff stripped for kMan, then split_documents. A file holding NUL bytes is binary and gives
// none. Throws moe::Error naming path when it cannot be read or decompressed, or is too large.
std::vector<std::string> read_documents(const std::string& path, SourceFormat format, size_t max_bytes);

struct PrepareOptions {
  int threads = 0;                                   // <= 0: all hardware threads
  std::function<void(const std::string&)> progress;  // one line per step; may be empty
};

struct SourceStats {
  std::string name;
  double share = 0;  // normalized weight
  int64_t files = 0;
  int64_t documents_read = 0;   // documents tokenized (a prefix of the source's shuffled order)
  int64_t train_documents = 0;  // distinct documents in train (each may be repeated)
  int64_t val_documents = 0;
  int64_t train_tokens = 0;  // tokens taken into train, repeats counted, EOS included
  int64_t val_tokens = 0;
  double epochs = 0;  // train_tokens / tokens of the distinct train documents
};

struct PrepareResult {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<SourceStats> sources;
  std::vector<std::string> train_shards;  // file names within out_dir
  std::vector<std::string> val_shards;
};

// Reads, tokenizes and mixes the sources and writes the shards and manifest.json into out_dir
// (created if missing). Deterministic: the same config, tokenizer and files give byte-identical
// output whatever the thread count. Each source's share of training tokens matches its weight
// to within one document (small sources repeat, large ones are subsampled); documents are
// assigned to train or validation whole, and each split's document order is shuffled by seed. Every file is
// written atomically; shard files of an earlier run that the new manifest does not list are removed. Throws
// moe::Error naming the source or file on missing or empty sources and on I/O errors.
PrepareResult prepare_data(const MixtureConfig& config, const Tokenizer& tokenizer,
                           const std::string& tokenizer_path, const std::string& out_dir,
                           const PrepareOptions& options = {});

constexpr char kShardMagic[8] = {'M', 'O', 'E', 'T', 'O', 'K', '0', '1'};
constexpr uint32_t kShardVersion = 1;
constexpr size_t kShardHeaderBytes = 32;

struct ShardHeader {
  uint32_t version = 0;
  uint32_t vocab_size = 0;
  uint32_t token_bytes = 0;
  uint64_t n_tokens = 0;
};

// Validates a shard's header against its size; throws moe::Error naming path (bad magic,
// unsupported version or width, truncated or oversized file).
ShardHeader parse_shard_header(const uint8_t* data, size_t size, const std::string& path);

// One split of a prepared directory, memory-mapped. Shards are listed by manifest.json and each
// header is checked against it; any mismatch throws moe::Error naming the file.
class TokenShards {
 public:
  TokenShards(const std::string& dir, const std::string& split /* "train" or "val" */);
  ~TokenShards();
  TokenShards(const TokenShards&) = delete;
  TokenShards& operator=(const TokenShards&) = delete;

  int64_t n_tokens() const { return n_tokens_; }
  uint32_t vocab_size() const { return vocab_size_; }

  // Windows of seq_len + 1 tokens start at multiples of seq_len: (n_tokens - 1) / seq_len of them.
  int64_t n_windows(int64_t seq_len) const;

  // Fills out with [batch, seq_len + 1] tokens: row b is window perm_e(i mod n_windows) for
  // i = step * batch + b, where perm_e is a permutation seeded by (seed, e = i / n_windows).
  // Every window is used once per epoch; the result depends only on the arguments, so a resumed
  // run gets the same batches. Throws moe::Error when the split is shorter than one window or a
  // token is outside the vocabulary (naming the shard).
  void batch(uint64_t seed, int64_t step, int64_t batch, int64_t seq_len, std::vector<int32_t>* out) const;

  // Tokens [offset, offset + count) of the split, across shard boundaries. Throws moe::Error
  // naming the shard on a token outside the vocabulary.
  void read(int64_t offset, int64_t count, int32_t* out) const;

 private:
  struct Shard {
    std::unique_ptr<MappedFile> file;
    int64_t begin = 0;  // offset of its first token in the split
    int64_t n_tokens = 0;
    uint32_t token_bytes = 0;
  };
  std::string split_;
  std::vector<Shard> shards_;
  int64_t n_tokens_ = 0;
  uint32_t vocab_size_ = 0;
};

}  // namespace moe::train
