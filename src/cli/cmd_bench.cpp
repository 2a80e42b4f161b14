// `moe bench`: prompt-processing and generation speed of a model (median of repetitions, like
// llama-bench's pp/tg tests), the weight bytes one generated token reads, and how close that comes
// to the machine's measured memory read bandwidth. `moe bench --membw` measures only the bandwidth.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cli/commands.h"
#include "core/error.h"
#include "model/model.h"

namespace moe::cli {

namespace {

struct BenchArgs {
  std::string model;
  int64_t n_prompt = 512;
  int64_t n_gen = 128;
  int threads = 0;
  int reps = 3;
  bool json = false;
  bool membw_only = false;
  int64_t membw_mib = 0;  // 0: 1024 for --membw, 512 alongside a model benchmark
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Sums [p, p + n) with independent accumulators (integer adds, so the compiler may vectorize
// them); the AVX2 version when the CPU has it (one core's loads reach more of the bandwidth with
// 32-byte loads). The result is kept observable through a volatile sink.
volatile uint64_t g_membw_sink = 0;

uint64_t sum_words_generic(const uint64_t* p, int64_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    a0 += p[i + 0];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
    a4 += p[i + 4];
    a5 += p[i + 5];
    a6 += p[i + 6];
    a7 += p[i + 7];
  }
  for (; i < n; ++i) a0 += p[i];
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_words_avx2(const uint64_t* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 8)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 12)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + sum_words_generic(p + i, n - i);
}
#endif

uint64_t sum_words(const uint64_t* p, int64_t n) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return sum_words_avx2(p, n);
#endif
  return sum_words_generic(p, n);
}

// The same sum with the range read as kMembwStreams stretches side by side, 512 bytes of each in
// turn: a core reaches more bandwidth over several sequential streams than over one, and the
// decode kernels read weights that way (kernels/cpu/qdot_grouped.h, kDecodeStreams).
constexpr int64_t kMembwStreams = 4;
uint64_t sum_words_streams(const uint64_t* p, int64_t n) {
  constexpr int64_t kChunk = 64;  // words
  const int64_t per = n / kMembwStreams / kChunk * kChunk;
  uint64_t total = 0;
  for (int64_t off = 0; off < per; off += kChunk)
    for (int64_t s = 0; s < kMembwStreams; ++s) total += sum_words(p + s * per + off, kChunk);
  return total + sum_words(p + kMembwStreams * per, n - kMembwStreams * per);
}

// Read bandwidth in GB/s (1e9 bytes): a buffer of mib MiB, first written by the threads that will
// read it, then each thread sums its contiguous share, as one stream and as several; the best of
// `passes` full passes of each.
double measure_membw(ThreadPool& pool, int64_t mib, int passes = 5) {
  const int64_t n = mib * (int64_t{1} << 20) / static_cast<int64_t>(sizeof(uint64_t));
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  MOE_CHECK(pages <= 0 || page <= 0 || mib * (int64_t{1} << 20) <= static_cast<int64_t>(pages) * page / 2,
            "bench: a bandwidth buffer of ", mib, " MiB is more than half of this machine's memory");
  // 2 MiB aligned, and transparent huge pages asked for (fewer TLB misses; ignored if unavailable).
  constexpr size_t kAlign = size_t{2} << 20;
  const size_t bytes = (static_cast<size_t>(n) * sizeof(uint64_t) + kAlign - 1) / kAlign * kAlign;
  std::unique_ptr<uint64_t, decltype(&std::free)> buf(
      static_cast<uint64_t*>(std::aligned_alloc(kAlign, bytes)), &std::free);
  MOE_CHECK(buf != nullptr, "bench: cannot allocate a bandwidth buffer of ", mib, " MiB");
#if defined(MADV_HUGEPAGE)
  madvise(buf.get(), bytes, MADV_HUGEPAGE);
#endif
  uint64_t* data = buf.get();
  constexpr int64_t kGrain = 4096 / sizeof(uint64_t);  // whole pages per thread
  pool.run(
      n,
      [&](int, int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) data[i] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
      },
      kGrain);
  std::vector<uint64_t> partial(static_cast<size_t>(pool.size()), 0);
  double best = 0.0;
  for (int pass = 0; pass < 2 * passes; ++pass) {
    const bool streams = pass % 2 == 1;
    const auto t0 = Clock::now();
    pool.run(
        n,
        [&](int ti, int64_t b, int64_t e) {
          partial[static_cast<size_t>(ti)] +=
              streams ? sum_words_streams(data + b, e - b) : sum_words(data + b, e - b);
        },
        kGrain);
    const double s = seconds_since(t0);
    if (s > 0) best = std::max(best, static_cast<double>(n) * sizeof(uint64_t) / s / 1e9);
  }
  uint64_t total = 0;
  for (uint64_t v : partial) total += v;
  g_membw_sink = total;
  return best;
}

// Weight bytes one generated token reads: every tensor in full, except the routed experts
// ("*_exps", n_expert_used of n_expert) and the token embedding (one row, unless the output
// projection is tied to it and reads it whole).
uint64_t weight_bytes_per_token(const GgufFile& f, const ModelConfig& c) {
  const bool tied = f.find_tensor("output.weight") == nullptr;
  uint64_t total = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    uint64_t b = t.n_bytes;
    if (t.name.find("_exps") != std::string::npos && c.n_expert > 0) {
      b = b * static_cast<uint64_t>(c.n_expert_used) / static_cast<uint64_t>(c.n_expert);
    } else if (t.name == "token_embd.weight" && !tied && t.n_dims >= 2 && t.ne[1] > 0) {
      b = b / static_cast<uint64_t>(t.ne[1]);
    }
    total += b;
  }
  return total;
}

// Reads one byte of every page of every tensor so that the timed passes take no mmap page faults
// (a warm-up forward of a few tokens would leave most routed experts untouched).
void touch_weights(const GgufFile& f, ThreadPool& pool) {
  const std::vector<GgufTensorInfo>& ts = f.tensors();
  std::vector<uint64_t> partial(static_cast<size_t>(pool.size()), 0);
  pool.run(static_cast<int64_t>(ts.size()), [&](int ti, int64_t b, int64_t e) {
    uint64_t s = 0;
    for (int64_t i = b; i < e; ++i) {
      const uint8_t* p = f.tensor_data(ts[static_cast<size_t>(i)]);
      const size_t n = ts[static_cast<size_t>(i)].n_bytes;
      for (size_t off = 0; off < n; off += 4096) s += p[off];
    }
    partial[static_cast<size_t>(ti)] = s;
  });
  uint64_t total = 0;
  for (uint64_t v : partial) total += v;
  g_membw_sink = total;
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

void run_membw(const BenchArgs& a) {
  ThreadPool pool(a.threads);
  const int64_t mib = a.membw_mib > 0 ? a.membw_mib : 1024;
  const double gbs = measure_membw(pool, mib);
  if (a.json) {
    nlohmann::ordered_json j;
    j["membw_gb_s"] = gbs;
    j["threads"] = pool.size();
    j["buffer_mib"] = mib;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "memory read bandwidth: %.1f GB/s (%d threads, %lld MiB buffer, best of 5 passes, 1 or 4 streams)\n",
        gbs, pool.size(), static_cast<long long>(mib));
  }
}

void run_bench(const BenchArgs& a) {
  MOE_CHECK(!a.model.empty(), "bench: -m MODEL is required (or --membw to measure memory bandwidth only)");
  MOE_CHECK(a.n_prompt >= 1, "bench: -p must be at least 1, not ", a.n_prompt);
  MOE_CHECK(a.n_gen >= 0, "bench: -n must not be negative, not ", a.n_gen);
  constexpr int64_t kMaxTokens = 65536;  // every repetition allocates a cache of max(p, n) positions
  MOE_CHECK(a.n_prompt <= kMaxTokens, "bench: -p must be at most ", kMaxTokens, ", not ", a.n_prompt);
  MOE_CHECK(a.n_gen <= kMaxTokens, "bench: -n must be at most ", kMaxTokens, ", not ", a.n_gen);
  MOE_CHECK(a.reps >= 1, "bench: -r must be at least 1, not ", a.reps);

  LoadedModel m = load_model(a.model);
  const Model& model = *m.model;
  const ModelConfig& c = model.config();
  MOE_CHECK(c.n_vocab > 0, a.model, ": the model has no vocabulary");
  ThreadPool pool(a.threads);

  const double membw = measure_membw(pool, a.membw_mib > 0 ? a.membw_mib : 512);
  const uint64_t bytes_per_token = weight_bytes_per_token(*m.file, c);

  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(c.n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(a.n_prompt));
  for (int32_t& id : prompt) id = pick(rng);
  const int32_t first_gen = pick(rng);
  const int64_t n_ctx = std::max<int64_t>({a.n_prompt, a.n_gen, 8});  // the warm-up needs 5
  std::vector<float> logits(static_cast<size_t>(c.n_vocab));

  // Untimed warm-up: fault in every weight page, then a few tokens through the whole network.
  touch_weights(*m.file, pool);
  {
    KvCache cache = model.new_cache(n_ctx);
    const std::vector<int32_t> few(prompt.begin(), prompt.begin() + std::min<int64_t>(a.n_prompt, 4));
    model.forward(few, 0, cache, false, logits.data(), pool);
    const int32_t one[1] = {argmax(logits)};
    model.forward(one, static_cast<int64_t>(few.size()), cache, false, logits.data(), pool);
  }

  // Each repetition: the prompt as one batch into an empty cache, then n tokens one at a time
  // from an empty cache (each fed back its predecessor's argmax), as llama-bench's pp and tg.
  std::vector<double> pp, tg;
  for (int rep = 0; rep < a.reps; ++rep) {
    {
      KvCache cache = model.new_cache(n_ctx);
      const auto t0 = Clock::now();
      model.forward(prompt, 0, cache, false, logits.data(), pool);
      pp.push_back(static_cast<double>(a.n_prompt) / seconds_since(t0));
    }
    if (a.n_gen > 0) {
      KvCache cache = model.new_cache(n_ctx);
      int32_t tok[1] = {first_gen};
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < a.n_gen; ++i) {
        model.forward(tok, i, cache, false, logits.data(), pool);
        tok[0] = argmax(logits);
      }
      tg.push_back(static_cast<double>(a.n_gen) / seconds_since(t0));
    }
  }
  const double pp_tok_s = median(pp);
  const double tg_tok_s = tg.empty() ? 0.0 : median(tg);
  const double tg_gb_s = static_cast<double>(bytes_per_token) * tg_tok_s / 1e9;
  const double bw_fraction = membw > 0 ? tg_gb_s / membw : 0.0;
  const double bound_tok_s = bytes_per_token > 0 ? membw * 1e9 / static_cast<double>(bytes_per_token) : 0.0;
  const char* isa = kernels::isa_name(kernels::active_isa());

  if (a.json) {
    nlohmann::ordered_json j;
    j["model"] = a.model;
    j["arch"] = c.arch;
    j["threads"] = pool.size();
    j["isa"] = isa;
    j["n_prompt"] = a.n_prompt;
    j["n_gen"] = a.n_gen;
    j["reps"] = a.reps;
    j["pp_tok_s"] = pp_tok_s;
    // With -n 0 nothing is generated: the generation figures are null.
    const auto gen = [&](double v) {
      return tg.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(v);
    };
    j["tg_tok_s"] = gen(tg_tok_s);
    j["bytes_per_token"] = bytes_per_token;
    j["tg_gb_s"] = gen(tg_gb_s);
    j["membw_gb_s"] = membw;
    j["bw_fraction"] = gen(bw_fraction);
    j["bound_tok_s"] = bound_tok_s;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("model        %s (%s)\n", a.model.c_str(), c.arch.c_str());
  std::printf("isa          %s, %d threads, median of %d\n", isa, pool.size(), a.reps);
  std::printf("%-12s %12s\n", "test", "tok/s");
  std::printf("%-12s %12.2f\n", ("pp" + std::to_string(a.n_prompt)).c_str(), pp_tok_s);
  if (!tg.empty()) std::printf("%-12s %12.2f\n", ("tg" + std::to_string(a.n_gen)).c_str(), tg_tok_s);
  std::printf("weights read per token  %.1f MB\n", static_cast<double>(bytes_per_token) / 1e6);
  std::printf("memory read bandwidth   %.1f GB/s (measured, %d threads)\n", membw, pool.size());
  if (!tg.empty())
    std::printf("generation reads        %.1f GB/s = %.0f%% of it (bandwidth bound: %.1f tok/s)\n", tg_gb_s,
                100.0 * bw_fraction, bound_tok_s);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Measure prompt and generation speed, and memory bandwidth use");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("-m,--model", a->model, "model file (GGUF) or Hugging Face directory");
  cmd->add_option("-p,--n-prompt", a->n_prompt, "prompt tokens, evaluated as one batch")
      ->capture_default_str();
  cmd->add_option("-n,--n-gen", a->n_gen, "tokens generated one at a time; 0 = none")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "threads; 0 = all cores")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("-r,--reps", a->reps, "repetitions; the median is reported")->capture_default_str();
  cmd->add_flag("--json", a->json, "print one JSON object on stdout");
  cmd->add_flag("--membw", a->membw_only, "measure only the memory read bandwidth");
  cmd->add_option("--membw-mib", a->membw_mib,
                  "buffer size for the bandwidth measurement in MiB (default 1024 with --membw, else 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->callback([a] {
    if (a->membw_only) {
      run_membw(*a);
    } else {
      run_bench(*a);
    }
  });
}

}  // namespace moe::cli
