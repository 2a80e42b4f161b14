// `moe bench`: runs on small random models (a DeepSeek-V3-style MoE and a dense Qwen2) and reports
// what it says it does: the JSON keys, positive speeds, and the weight bytes a generated token
// reads, recomputed here from the GGUF's tensor shapes. No timing is asserted. Bad flags exit
// non-zero with a message that names the problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/dtype.h"
#include "formats/gguf.h"
#include "model/presets.h"
#include "testdata.h"

namespace moe {
namespace {

std::string moe_cmd(const std::string& args, int* rc, bool merge_stderr = false) {
  std::string out;
  *rc = test::run_command(test::moe_binary() + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null"), &out);
  return out;
}

// The bytes of one tensor from its shape and type.
uint64_t tensor_bytes(const GgufTensorInfo& t) {
  return row_bytes(t.type, t.ne[0]) * static_cast<uint64_t>(t.ne[1] * t.ne[2] * t.ne[3]);
}

// Weight bytes per generated token: every tensor, routed experts (ne[2] of them) at
// expert_used_count of them, the token embedding one row unless the output is tied to it.
uint64_t expected_bytes_per_token(const std::string& path) {
  const auto f = GgufFile::open(path);
  const std::string arch = f->get_string("general.architecture", "");
  const int64_t n_used = f->get_int(arch + ".expert_used_count", 0);
  const bool has_output = f->find_tensor("output.weight") != nullptr;
  uint64_t total = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    if (t.name.find("_exps") != std::string::npos) {
      EXPECT_EQ(t.ne[2], f->get_int(arch + ".expert_count", -1)) << t.name;
      total += row_bytes(t.type, t.ne[0]) * static_cast<uint64_t>(t.ne[1] * n_used);
    } else if (t.name == "token_embd.weight" && has_output) {
      total += row_bytes(t.type, t.ne[0]);
    } else {
      total += tensor_bytes(t);
    }
  }
  return total;
}

std::string write_model(const std::string& dir, const std::string& preset, const std::string& type) {
  const std::string f32 = dir + "/" + preset + ".gguf";
  int rc = 0;
  std::string log = moe_cmd("init --preset " + preset + " --reduced -o " + f32, &rc, true);
  EXPECT_EQ(rc, 0) << log;
  if (type.empty()) return f32;
  const std::string out = dir + "/" + preset + "-" + type + ".gguf";
  log = moe_cmd("quantize " + f32 + " " + out + " " + type, &rc, true);
  EXPECT_EQ(rc, 0) << log;
  return out;
}

void check_bench_json(const std::string& model, bool moe_model) {
  int rc = 0;
  const std::string out = moe_cmd("bench -m " + model + " -p 8 -n 4 -r 1 -t 1 --membw-mib 8 --json", &rc);
  ASSERT_EQ(rc, 0) << model;
  const nlohmann::json j = nlohmann::json::parse(out);
  for (const char* key :
       {"model", "arch", "threads", "isa", "n_prompt", "n_gen", "reps", "pp_tok_s", "tg_tok_s",
        "bytes_per_token", "tg_gb_s", "membw_gb_s", "bw_fraction", "bound_tok_s"})
    EXPECT_TRUE(j.contains(key)) << key << " in " << out;
  EXPECT_EQ(j["model"], model);
  EXPECT_EQ(j["arch"], moe_model ? "deepseek2" : "qwen2");
  EXPECT_EQ(j["threads"], 1);
  EXPECT_FALSE(j["isa"].get<std::string>().empty());
  EXPECT_EQ(j["n_prompt"], 8);
  EXPECT_EQ(j["n_gen"], 4);
  EXPECT_EQ(j["reps"], 1);
  EXPECT_GT(j["pp_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["tg_tok_s"].get<double>(), 0.0);
  EXPECT_GT(j["membw_gb_s"].get<double>(), 0.0);
  EXPECT_GT(j["tg_gb_s"].get<double>(), 0.0);
  EXPECT_GT(j["bound_tok_s"].get<double>(), 0.0);
  const uint64_t want = expected_bytes_per_token(model);
  EXPECT_EQ(j["bytes_per_token"].get<uint64_t>(), want) << model;
  // Derived figures agree with the reported ones.
  EXPECT_NEAR(j["tg_gb_s"].get<double>(), want * j["tg_tok_s"].get<double>() / 1e9,
              1e-9 * j["tg_gb_s"].get<double>());
  EXPECT_NEAR(j["bound_tok_s"].get<double>(), j["membw_gb_s"].get<double>() * 1e9 / want,
              1e-9 * j["bound_tok_s"].get<double>());
}

class BenchCli : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove_all(dir); }
  const std::string dir = test::temp_dir("benchcli");
};

TEST_F(BenchCli, MoeModelJsonAndBytesPerToken) {
  const std::string f32 = write_model(dir, "bench-deepseek2", "");
  check_bench_json(f32, true);
  // Routed experts count n_expert_used / n_expert of their bytes: strictly less than the file's.
  const auto f = GgufFile::open(f32);
  uint64_t all = 0;
  for (const GgufTensorInfo& t : f->tensors()) all += tensor_bytes(t);
  EXPECT_LT(expected_bytes_per_token(f32), all);
  check_bench_json(write_model(dir, "bench-deepseek2", "q8_0"), true);
}

TEST_F(BenchCli, DenseModelJson) { check_bench_json(write_model(dir, "bench-qwen2", "q4_0"), false); }

// Output tied to the token embedding: the embedding is read whole for the logits.
TEST_F(BenchCli, TiedOutputCountsEmbeddingFully) {
  const auto tok = GgufFile::open(test::testdata("models/stories260K.gguf"));
  RandomModelOptions opt;
  opt.seed = 3;
  opt.tied_output = true;
  opt.tokenizer_source = tok.get();
  ModelConfig c = reduced(find_preset("r1-distill-qwen-1.5b").config);
  c.n_vocab = 512;  // stories260K's tokenizer
  const std::string model = dir + "/tied.gguf";
  write_random_model(c, opt, model);
  const auto f = GgufFile::open(model);
  ASSERT_EQ(f->find_tensor("output.weight"), nullptr);
  uint64_t all = 0;
  for (const GgufTensorInfo& t : f->tensors()) all += tensor_bytes(t);
  int rc = 0;
  const std::string out = moe_cmd("bench -m " + model + " -p 4 -n 2 -r 1 --membw-mib 8 --json", &rc, true);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["bytes_per_token"].get<uint64_t>(), all);
}

TEST_F(BenchCli, HumanOutputAndNoGeneration) {
  const std::string model = write_model(dir, "bench-qwen2", "");
  int rc = 0;
  std::string out = moe_cmd("bench -m " + model + " -p 4 -n 2 -r 1 --membw-mib 8", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("pp4"), std::string::npos) << out;
  EXPECT_NE(out.find("tg2"), std::string::npos) << out;
  EXPECT_NE(out.find("GB/s"), std::string::npos) << out;
  // -n 0: prompt speed only; the generation figures are null.
  out = moe_cmd("bench -m " + model + " -p 4 -n 0 -r 1 --membw-mib 8 --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_GT(j["pp_tok_s"].get<double>(), 0.0);
  EXPECT_TRUE(j["tg_tok_s"].is_null());
  EXPECT_TRUE(j["bw_fraction"].is_null());
}

TEST_F(BenchCli, Membw) {
  int rc = 0;
  const std::string out = moe_cmd("bench --membw --membw-mib 16 -t 1 --json", &rc);
  ASSERT_EQ(rc, 0) << out;
  const nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_GT(j["membw_gb_s"].get<double>(), 0.0);
  EXPECT_EQ(j["threads"], 1);
}

TEST_F(BenchCli, BadFlagsNameTheProblem) {
  const std::string model = write_model(dir, "bench-qwen2", "");
  const std::string garbage = dir + "/garbage.gguf";
  {
    FILE* f = std::fopen(garbage.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fputs("not a model", f);
    std::fclose(f);
  }
  const std::pair<std::string, std::string> cases[] = {
      {"bench -m " + model + " -p 0", "-p must be at least 1"},
      {"bench -m " + model + " -p -3", "-p must be at least 1"},
      {"bench -m " + model + " -n -1", "-n must not be negative"},
      {"bench -m " + model + " -p 100000000", "-p must be at most 65536"},
      {"bench -m " + model + " -n 100000000", "-n must be at most 65536"},
      {"bench -m " + model + " -r 0", "-r must be at least 1"},
      {"bench -m " + model + " -t -2", "--threads"},
      {"bench -m " + model + " -p many", "--n-prompt"},
      {"bench -p 8", "-m MODEL is required"},
      {"bench -m " + dir + "/missing.gguf", dir + "/missing.gguf"},
      {"bench -m " + garbage, "not a GGUF file"},
      {"bench --membw --membw-mib 0", "--membw-mib"},
      {"bench -m " + model + " --frobnicate", "--frobnicate"},
  };
  for (const auto& [args, want] : cases) {
    int rc = 0;
    const std::string out = moe_cmd(args, &rc, true);
    EXPECT_NE(rc, 0) << args;
    EXPECT_NE(out.find(want), std::string::npos) << args << " -> " << out;
    EXPECT_EQ(out.find("internal error"), std::string::npos) << args << " -> " << out;
    // One line on stderr, nothing on stdout.
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << args << " -> " << out;
  }
}

}  // namespace
}  // namespace moe
