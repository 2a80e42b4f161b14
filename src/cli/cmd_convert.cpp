// `moe convert INPUT OUT.gguf [--type T]`: a Hugging Face model directory (or a GGUF file) to a
// GGUF file, with llama.cpp's convert_hf_to_gguf.py rules for which tensors take the requested
// type: 1-D tensors, norms, biases and routers stay f32; Q8_0 falls back to f16 for rows that
// are not a multiple of 32.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/hf_model.h"

namespace moe::cli {

namespace {

struct ConvertArgs {
  std::string input;
  std::string output;
  std::string type = "auto";
  int threads = 0;
  bool verbose = false;
};

// The output types and llama.cpp's general.file_type (LlamaFileType) for each.
struct OutType {
  const char* name;
  DType dtype;
  uint32_t file_type;
};
constexpr OutType kOutTypes[] = {
    {"f32", DType::F32, 0},
    {"f16", DType::F16, 1},
    {"q8_0", DType::Q8_0, 7},
    {"bf16", DType::BF16, 32},
};

const OutType& out_type(const std::string& name) {
  for (const OutType& t : kOutTypes)
    if (name == t.name) return t;
  fail("--type: '", name, "' is not one of f32, f16, bf16, q8_0, auto");
}

// --type auto: the converter's guess for a Hugging Face model (bf16 when its weights are bf16,
// else f16); for a GGUF file, the type it already has.
const OutType& auto_type(const GgufFile& in, bool hf) {
  const int64_t ft = in.get_int("general.file_type", -1);
  if (hf) return out_type(ft == 32 ? "bf16" : "f16");
  for (const OutType& t : kOutTypes)
    if (ft == static_cast<int64_t>(t.file_type)) return t;
  fail(in.name(), ": general.file_type ", ft, " is not f32, f16, bf16 or q8_0; give --type");
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_float_type(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
      return true;  // what kernels::dequantize_row reads
    default:
      return false;
  }
}

// convert_hf_to_gguf.py's prepare_tensors: 1-D tensors, *_norm.weight, anything not named
// *.weight (biases, exp_probs_b.bias) and the routers stay f32; Q8_0 needs whole blocks of 32
// per row, else the converter falls back to f16.
DType target_type(const GgufTensorInfo& t, DType want) {
  const std::string& n = t.name;
  if (t.n_dims <= 1 || ends_with(n, "_norm.weight") || !ends_with(n, ".weight") ||
      ends_with(n, ".ffn_gate_inp.weight") || ends_with(n, ".ffn_gate_inp_shexp.weight") ||
      n == "position_embd.weight" || n == "token_types.weight")
    return DType::F32;
  if (want == DType::Q8_0 && t.ne[0] % kQK8_0 != 0) return DType::F16;
  return want;
}

std::vector<uint8_t> convert_tensor(const GgufFile& in, const GgufTensorInfo& t, DType to, ThreadPool& pool) {
  const uint8_t* src = in.tensor_data(t);
  if (t.type == to) return std::vector<uint8_t>(src, src + t.n_bytes);
  MOE_CHECK(is_float_type(t.type), in.name(), ": tensor '", t.name, "' of type ", dtype_name(t.type),
            " cannot be converted to ", dtype_name(to));
  const int64_t n0 = t.ne[0], rows = t.ne[1] * t.ne[2] * t.ne[3];
  const size_t in_row = row_bytes(t.type, n0), out_row = row_bytes(to, n0);
  std::vector<uint8_t> out(out_row * static_cast<size_t>(rows));
  if (n0 == 0 || rows == 0) return out;
  pool.run(rows, [&](int, int64_t begin, int64_t end) {
    std::vector<float> tmp(static_cast<size_t>(n0));
    for (int64_t r = begin; r < end; ++r) {
      kernels::dequantize_row(t.type, src + static_cast<size_t>(r) * in_row, tmp.data(), n0);
      kernels::quantize_row(to, tmp.data(), out.data() + static_cast<size_t>(r) * out_row, n0);
    }
  });
  return out;
}

std::string shape_of(const GgufTensorInfo& t) {
  std::string s = "{";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "}";
}

void run_convert(const ConvertArgs& a) {
  const bool hf = is_hf_model_dir(a.input);
  std::unique_ptr<GgufFile> in;
  if (hf) {
    in = open_hf_model(a.input);
  } else {
    std::error_code ec;
    MOE_CHECK(!std::filesystem::is_directory(a.input, ec), a.input,
              ": a directory without config.json (not a Hugging Face model directory)");
    in = GgufFile::open(a.input);
  }
  const OutType& ot = a.type == "auto" ? auto_type(*in, hf) : out_type(a.type);

  GgufWriter w;  // alignment 32, as llama.cpp writes
  for (const auto& [key, value] : in->metadata()) {
    if (key != "general.alignment") w.set(key, value);
  }
  w.set("general.file_type", GgufValue::u32(ot.file_type));

  ThreadPool pool(a.threads);
  size_t total = 0;
  for (const GgufTensorInfo& t : in->tensors()) {
    const DType to = is_float_type(t.type) ? target_type(t, ot.dtype) : t.type;
    const std::vector<uint8_t> bytes = convert_tensor(*in, t, to, pool);
    w.add_tensor(t.name, to, std::vector<int64_t>(t.ne, t.ne + t.n_dims), bytes.data(), bytes.size());
    total += bytes.size();
    if (a.verbose)
      std::fprintf(stderr, "%-40s %-5s -> %-5s %s\n", t.name.c_str(), dtype_name(t.type), dtype_name(to),
                   shape_of(t).c_str());
  }
  w.write(a.output);
  std::printf("%s: %zu tensors, %zu metadata keys, %s, %.2f MiB of tensor data\n", a.output.c_str(),
              in->tensors().size(), in->metadata().size(), ot.name,
              static_cast<double>(total) / (1024.0 * 1024.0));
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("convert", "Convert a Hugging Face model directory (or a GGUF file) to GGUF");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("input", a->input,
                  "Hugging Face model directory (config.json, *.safetensors, tokenizer.json) or GGUF file")
      ->required();
  cmd->add_option("output", a->output, "GGUF file to write (atomically)")->required();
  cmd->add_option("--type", a->type, "tensor type: f32, f16, bf16, q8_0, or auto (the model's 16-bit type)")
      ->check(CLI::IsMember({"auto", "f32", "f16", "bf16", "q8_0"}));
  cmd->add_option("-t,--threads", a->threads, "threads (default: all)");
  cmd->add_flag("-v,--verbose", a->verbose, "print each tensor's conversion");
  cmd->callback([a] { run_convert(*a); });
}

}  // namespace moe::cli
