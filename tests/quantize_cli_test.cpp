// `moe quantize`: every type on stories260K (whose 64-wide rows make llama.cpp's fallbacks
// apply) and on a random llama model with 256-wide rows (real K-quant tensors); the outputs load
// and generate, `moe info` shows the types, errors are one line and leave no file. QuantLlamaCpp*
// compares a Q4_K_M file's logits with llama.cpp's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "formats/gguf.h"
#include "formats/npy.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/presets.h"
#include "testdata.h"

namespace moe {
namespace {

std::string moe_cmd(const std::string& args, int* rc, bool merge_stderr = false) {
  std::string out;
  *rc = test::run_command(test::moe_binary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"), &out);
  return out;
}

std::map<std::string, DType> types_of(const std::string& path) {
  std::map<std::string, DType> out;
  const auto f = GgufFile::open(path);  // must outlive the loop
  for (const GgufTensorInfo& t : f->tensors()) out[t.name] = t.type;
  return out;
}

// A llama model whose matrices are whole K-quant super-blocks wide, 8 layers so that
// use_more_bits picks some layers and not others.
ModelConfig kquant_llama() {
  ModelConfig c = reduced(find_preset("r1-distill-llama-8b").config);
  c.n_vocab = 512;  // stories260K's tokenizer
  c.n_embd = 256;
  c.n_layer = 8;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim_k = c.head_dim_v = c.rope.n_rot = 64;
  c.rope.freq_factors.clear();
  c.n_ff = 512;
  return c;
}

std::string write_kquant_llama(const std::string& dir) {
  const auto tok = GgufFile::open(test::testdata("models/stories260K.gguf"));
  RandomModelOptions opt;
  opt.seed = 99;
  opt.tokenizer_source = tok.get();
  const std::string path = dir + "/llama256.gguf";
  write_random_model(kquant_llama(), opt, path);
  return path;
}

TEST(QuantizeCli, StoriesEveryTypeLoadsAndRuns) {
  const std::string in = test::testdata("models/stories260K.gguf");
  const std::string dir = test::temp_dir("quantize");
  const std::string want_text =
      test::read_file(test::testdata("models/stories260K.greedy-200.txt")).substr(0, 40);
  const std::map<std::string, std::pair<uint32_t, const char*>> types = {
      {"Q8_0", {7, "q8_0"}},  {"q4_0", {2, "q4_0"}}, {"Q4_K_M", {15, "q8_0"}},
      {"Q6_K", {18, "q8_0"}}, {"F16", {1, "f16"}},   {"bf16", {32, "bf16"}}};
  for (const auto& [type, expect] : types) {
    const std::string out = dir + "/" + type + ".gguf";
    int rc = 0;
    const std::string log = moe_cmd("quantize " + in + " " + out + " " + type, &rc, true);
    ASSERT_EQ(rc, 0) << log;
    EXPECT_NE(log.find("[  1/ 48] "), std::string::npos) << log;
    const auto f = GgufFile::open(out);
    EXPECT_EQ(f->get_int("general.file_type", -1), expect.first) << type;
    EXPECT_EQ(f->get_int("general.quantization_version", -1), 2) << type;
    EXPECT_EQ(f->get_string("tokenizer.ggml.model", ""), "llama");
    const auto t = types_of(out);
    EXPECT_EQ(t.at("blk.0.attn_norm.weight"), DType::F32) << type;
    EXPECT_STREQ(dtype_name(t.at("blk.0.attn_q.weight")), expect.second) << type;
    // 172-wide ffn_down rows are not whole blocks of 32: F16 for every block type.
    if (type != "bf16") {
      EXPECT_EQ(t.at("blk.0.ffn_down.weight"), DType::F16) << type;
    }
    const std::string info = moe_cmd("info " + out, &rc);
    ASSERT_EQ(rc, 0);
    EXPECT_NE(info.find(std::string("blk.0.attn_q.weight                      ") + expect.second),
              std::string::npos)
        << info;
    const std::string text = moe_cmd("run -m " + out + " -p '' -n 20 --temp 0", &rc);
    ASSERT_EQ(rc, 0) << type;
    EXPECT_FALSE(text.empty()) << type;
    if (type == "F16" || type == "bf16" || type == "Q8_0") {
      EXPECT_EQ(text.substr(0, 20), want_text.substr(0, 20)) << type << ": " << text;
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(QuantizeCli, KQuantMixtureFollowsLlamaCpp) {
  const std::string dir = test::temp_dir("quantize-k");
  const std::string in = write_kquant_llama(dir);
  const auto before = test::read_file(in);
  int rc = 0;
  for (const char* type : {"Q4_K_M", "Q6_K", "Q4_0"}) {
    const std::string out = dir + "/" + type + ".gguf";
    const std::string log = moe_cmd("quantize " + in + " " + out + " " + type, &rc, true);
    ASSERT_EQ(rc, 0) << log;
    const auto t = types_of(out);
    const std::string ty = type;
    EXPECT_EQ(t.at("output.weight"), DType::Q6_K) << type;  // llama.cpp: Q6_K for all but Q8_0
    EXPECT_EQ(t.at("token_embd.weight"),
              ty == "Q4_K_M" || ty == "Q6_K" ? (ty == "Q6_K" ? DType::Q6_K : DType::Q4_K) : DType::Q4_0);
    EXPECT_EQ(t.at("blk.3.ffn_norm.weight"), DType::F32);
    if (ty == "Q4_K_M") {
      // use_more_bits(i, 8): i < 1, i >= 7, (i - 1) % 3 == 2 -> layers 0, 3, 6, 7.
      for (int i = 0; i < 8; ++i) {
        const bool more = i == 0 || i == 3 || i == 6 || i == 7;
        const std::string b = "blk." + std::to_string(i) + ".";
        EXPECT_EQ(t.at(b + "attn_v.weight"), more ? DType::Q6_K : DType::Q4_K) << i;
        EXPECT_EQ(t.at(b + "ffn_down.weight"), more ? DType::Q6_K : DType::Q4_K) << i;
        EXPECT_EQ(t.at(b + "attn_q.weight"), DType::Q4_K) << i;
        EXPECT_EQ(t.at(b + "ffn_up.weight"), DType::Q4_K) << i;
      }
    }
    const std::string text = moe_cmd("run -m " + out + " -p 'Once' -n 20 --temp 0", &rc);
    EXPECT_EQ(rc, 0) << type;
    EXPECT_FALSE(text.empty());
    // Requantizing a K-quant file works (sources of every supported type are dequantized first).
    if (ty == "Q4_K_M") {
      const std::string log2 = moe_cmd("quantize " + out + " " + dir + "/re.gguf F16", &rc, true);
      EXPECT_EQ(rc, 0) << log2;
      EXPECT_EQ(types_of(dir + "/re.gguf").at("blk.1.attn_q.weight"), DType::F16);
    }
  }
  EXPECT_EQ(test::read_file(in), before) << "the input was modified";
  std::filesystem::remove_all(dir);
}

// Logits of a prompt (one batch) and of 24 greedy steps after it.
std::vector<float> run_logits(const std::string& path, int threads, std::vector<int32_t>* greedy_ids) {
  const LoadedModel m = load_model(path);
  const Model& model = *m.model;
  const int64_t n_vocab = model.config().n_vocab;
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 426, 288, 260};
  ThreadPool pool(threads);
  KvCache cache = model.new_cache(64);
  std::vector<float> out(prompt.size() * static_cast<size_t>(n_vocab));
  model.forward(prompt, 0, cache, true, out.data(), pool);
  std::vector<float> last(out.end() - n_vocab, out.end());
  greedy_ids->clear();
  for (int64_t pos = static_cast<int64_t>(prompt.size()); pos < static_cast<int64_t>(prompt.size()) + 24;
       ++pos) {
    const int32_t id = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    greedy_ids->push_back(id);
    model.forward(std::span<const int32_t>(&id, 1), pos, cache, false, last.data(), pool);
    out.insert(out.end(), last.begin(), last.end());
  }
  return out;
}

// The kernels' contracts end to end on quantized models: on each ISA path the logits do not
// change, to the bit, with the thread count or the weight layout (grouped, or the file's with
// MOE_REPACK=0); and on stories260K the scalar path's greedy output equals the SIMD paths'.
// (Across ISAs logits are close, not identical: rms_norm, softmax and SiLU round differently,
// and a last-bit change can move an activation across a quantization step.)
TEST(QuantizeCli, QuantizedModelsInvariantToThreadsLayoutAndIsa) {
  const std::string dir = test::temp_dir("quant-isa");
  const std::string llama = write_kquant_llama(dir);
  const std::string stories = test::testdata("models/stories260K.gguf");
  const kernels::Isa saved = kernels::active_isa();
  struct Case {
    std::string in, type;
  };
  const Case cases[] = {{stories, "q8_0"}, {stories, "q4_0"}, {llama, "q8_0"},
                        {llama, "q4_0"},   {llama, "q4_k_m"}, {llama, "q6_k"}};
  for (const Case& c : cases) {
    const std::string out = dir + "/" + std::filesystem::path(c.in).stem().string() + "-" + c.type + ".gguf";
    int rc = 0;
    moe_cmd("quantize " + c.in + " " + out + " " + c.type, &rc);
    ASSERT_EQ(rc, 0) << c.type;
    std::vector<int32_t> scalar_ids;
    for (int isa = 0; isa <= static_cast<int>(kernels::detected_isa()); ++isa) {
      kernels::force_isa(static_cast<kernels::Isa>(isa));
      std::vector<int32_t> want_ids;
      const std::vector<float> want = run_logits(out, 1, &want_ids);
      if (isa == 0) scalar_ids = want_ids;
      if (c.in == stories)
        EXPECT_EQ(want_ids, scalar_ids) << out << " " << kernels::isa_name(kernels::active_isa());
      for (int threads : {1, 2}) {
        for (const char* repack : {"1", "0"}) {
          setenv("MOE_REPACK", repack, 1);
          std::vector<int32_t> ids;
          const std::vector<float> got = run_logits(out, threads, &ids);
          unsetenv("MOE_REPACK");
          const std::string what = out + " " + kernels::isa_name(kernels::active_isa()) + " threads " +
                                   std::to_string(threads) + " MOE_REPACK=" + repack;
          ASSERT_EQ(got.size(), want.size()) << what;
          EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float))) << what;
          EXPECT_EQ(ids, want_ids) << what;
        }
      }
    }
  }
  kernels::force_isa(saved);
  std::filesystem::remove_all(dir);
}

TEST(QuantizeCli, ErrorsAreOneLineAndLeaveNoFile) {
  const std::string in = test::testdata("models/stories260K.gguf");
  const std::string dir = test::temp_dir("quantize-err");
  int rc = 0;
  std::string err = moe_cmd("quantize " + in + " " + dir + "/out.gguf Q3_K_S", &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(
      err,
      "moe: error: unknown quantization type 'Q3_K_S' (expected Q8_0, Q4_0, Q4_K_M, Q6_K, F16 or BF16)\n");
  err = moe_cmd("quantize " + dir + "/missing.gguf " + dir + "/out.gguf Q8_0", &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(err, "moe: error: " + dir + "/missing.gguf: no such file\n");
  err = moe_cmd("quantize " + in + " " + in + " Q8_0", &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.gguf"));
  for (const auto& e : std::filesystem::directory_iterator(dir)) ADD_FAILURE() << "left behind: " << e.path();
  std::filesystem::remove_all(dir);
}

std::string peer_missing() {
  const std::string peers =
      std::string(MOE_SOURCE_DIR) + "/.cache/peers/node_modules/node-llama-cpp/package.json";
  if (!std::filesystem::exists(peers)) return "node-llama-cpp not installed (scripts/install-peers.sh)";
  std::string out;
  if (test::run_command("node --version", &out) != 0) return "node not found";
  return "";
}

// Both engines dequantize the same blocks bit for bit, but llama.cpp multiplies them with
// activations quantized to Q8_K (K-quant weights) or Q8_0 (Q8_0/Q4_0 weights), which moves the
// logits. Measured on this 8-layer 256-wide random llama (logits of magnitude ~1-5): see the
// tolerances below, which leave ~2x margin; argmax agreement is not required (random-weight
// models have near-ties).
struct ParityResult {
  double dp, dlogit;
};

ParityResult llama_cpp_parity(const std::string& type) {
  const std::string dir = test::temp_dir("quant-parity");
  const std::string f32 = write_kquant_llama(dir);
  const std::string model = dir + "/q.gguf";
  int rc = 0;
  moe_cmd("quantize " + f32 + " " + model + " " + type, &rc);
  EXPECT_EQ(rc, 0);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 300, 200, 100, 50, 7, 8, 9, 10, 11, 12, 480};
  const LoadedModel m = load_model(model);
  ThreadPool pool(2);
  KvCache cache = m.model->new_cache(64);
  const int64_t n = static_cast<int64_t>(prompt.size()), V = m.model->config().n_vocab;
  std::vector<float> logits(static_cast<size_t>(n * V));
  m.model->forward(prompt, 0, cache, true, logits.data(), pool);
  write_npy_f32(dir + "/ours.npy", {n, V}, logits.data());
  std::ofstream(dir + "/ids.json") << nlohmann::json(prompt).dump();
  const std::string src = MOE_SOURCE_DIR;
  std::string out;
  EXPECT_EQ(test::run_command("node " + src + "/scripts/llama-cpp-eval.mjs " + model + " " + dir +
                                  "/ids.json " + dir + "/theirs.json --greedy 1 2>&1",
                              &out),
            0)
      << out;
  EXPECT_EQ(test::run_command(
                "node " + src + "/scripts/compare-llama-cpp.mjs " + dir + "/ours.npy " + dir + "/theirs.json",
                &out),
            0)
      << out;
  const auto r = nlohmann::json::parse(out);
  const ParityResult res{r["max_dp_all"], r["max_dlogit_all"]};
  std::printf("[   INFO   ] %s llama 256-wide vs llama.cpp: max |dp| %.2e, max |dlogit| %.2e\n", type.c_str(),
              res.dp, res.dlogit);
  std::filesystem::remove_all(dir);
  return res;
}

TEST(QuantLlamaCpp, QuantizedLogitsClose) {
  if (const std::string why = peer_missing(); !why.empty()) GTEST_SKIP() << why;
  for (const char* type : {"F16", "Q8_0", "Q6_K", "Q4_K_M"}) {
    const ParityResult r = llama_cpp_parity(type);
    EXPECT_LT(r.dlogit, 0.4) << type;
    EXPECT_LT(r.dp, 2e-2) << type;
  }
}

}  // namespace
}  // namespace moe
