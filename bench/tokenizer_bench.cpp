// Single-thread encode throughput of moe.cpp's byte-level BPE on a text file.
//
//   tokenizer_bench TOKENIZER TEXT_FILE [CHUNK_BYTES=65536] [REPEATS=3]
//
// TOKENIZER is a tokenizer.json, a Hugging Face model directory, or a GGUF file. The text is cut
// into chunks at line ends (as scripts/hf-tokenizer-ids.mjs --bench does for the Rust library),
// only the encode() calls are timed, and the best of REPEATS passes is reported; the first pass
// (cold word cache) is reported too. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/bpe.h"

namespace {

std::vector<std::string_view> chunks(const std::string& text, size_t size) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = std::min(text.size(), start + size);
    const size_t nl = text.find('\n', end);
    end = nl == std::string::npos ? text.size() : nl + 1;
    out.emplace_back(text.data() + start, end - start);
    start = end;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER TEXT_FILE [CHUNK_BYTES] [REPEATS]\n", argv[0]);
    return 2;
  }
  try {
    const std::string path = argv[1];
    const size_t chunk = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 65536;
    const int repeats = argc > 4 ? std::atoi(argv[4]) : 3;
    std::ifstream in(argv[2], std::ios::binary);
    MOE_CHECK(in, argv[2], ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();

    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<moe::GgufFile> gguf;
    std::unique_ptr<moe::Tokenizer> tok;
    if (path.size() > 5 && path.substr(path.size() - 5) == ".gguf") {
      gguf = moe::GgufFile::open(path);
      tok = moe::bpe_tokenizer_from_gguf(*gguf);
    } else {
      tok = moe::tokenizer_from_hf(path);
    }
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();

    const std::vector<std::string_view> parts = chunks(text, chunk);
    double best = 1e30, first = 0;
    size_t tokens = 0;
    for (int r = 0; r < std::max(1, repeats); ++r) {
      double elapsed = 0;
      tokens = 0;
      for (std::string_view p : parts) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<int32_t> ids = tok->encode(p, true);
        elapsed += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        tokens += ids.size();
      }
      if (r == 0) first = elapsed;
      best = std::min(best, elapsed);
    }
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::printf(
        "{\"impl\": \"moe.cpp\", \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.4f, \"mb_per_s\": "
        "%.2f, \"first_pass_mb_per_s\": %.2f, \"load_seconds\": %.3f}\n",
        text.size(), tokens, best, mb / best, mb / first, load_s);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
}
