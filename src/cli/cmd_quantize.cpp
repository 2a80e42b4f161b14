// `moe quantize IN.gguf OUT.gguf TYPE`: re-types a model's weights with llama.cpp's
// llama_model_quantize rules (src/llama-quant.cpp) so that the result has the tensor types
// llama-quantize would give (without an importance matrix):
//   - only tensors of 2+ dims named *weight are quantized; norms, routers (ffn_gate_inp),
//     position/token-type embeddings, biases and 1-D tensors (rope_freqs) keep their type;
//   - output.weight (and token_embd.weight when the model has no output.weight: tied embeddings)
//     become Q6_K for every quantized type but Q8_0 (Q8_0 when the row is not whole super-blocks);
//   - Q4_K_M gives Q6_K to attn_v / attn_kv_b (attn_qkv) and ffn_down of the layers use_more_bits
//     picks, Q5_K to attn_output of 8-expert models; 8-expert models get Q8_0 attn_v and attn_k;
//     attn_k_b / attn_v_b are ordinary tensors (llama.cpp's name tests do not match them);
//   - a row that is not a whole number of blocks falls back: Q6_K -> Q8_0 as llama.cpp; Q4_K and
//     Q5_K -> Q8_0 (llama.cpp picks Q5_0 / Q5_1, which this engine does not implement); then F16
//     when not a multiple of 32 (llama.cpp throws for Q8_0 / Q4_0 targets; we fall back to F16).
// Sources of any type this engine dequantizes (f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K) are
// converted to f32 first; unlike llama-quantize, requantizing needs no --allow-requantize.
// Tensors are written in llama.cpp's order (by layer, then name). Metadata is copied with
// general.file_type set to LLAMA_FTYPE and general.quantization_version 2. The output is written
// atomically: on any error no OUT file appears, and the input is never modified.
#include <algorithm>
#include <cctype>
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

namespace moe::cli {
namespace {

struct QuantizeArgs {
  std::string input;
  std::string output;
  std::string type;
  int threads = 0;
};

// A llama.cpp file type: its default tensor type and LLAMA_FTYPE value.
struct Ftype {
  const char* name;
  DType dtype;
  uint32_t file_type;
};
constexpr Ftype kFtypes[] = {
    {"Q8_0", DType::Q8_0, 7},  {"Q4_0", DType::Q4_0, 2}, {"Q4_K_M", DType::Q4_K, 15},
    {"Q6_K", DType::Q6_K, 18}, {"F16", DType::F16, 1},   {"BF16", DType::BF16, 32},
};

const Ftype& parse_ftype(const std::string& s) {
  std::string upper;
  for (char c : s) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Ftype& f : kFtypes)
    if (upper == f.name) return f;
  fail("unknown quantization type '", s, "' (expected Q8_0, Q4_0, Q4_K_M, Q6_K, F16 or BF16)");
}

// ggml_type_name spelling ("q4_K", "f32").
std::string ggml_name(DType t) {
  std::string n = dtype_name(t);
  if (n.size() > 2 && n.compare(n.size() - 2, 2, "_k") == 0) n.back() = 'K';
  return n;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int layer_of(const std::string& name) {
  int layer = -1;
  std::sscanf(name.c_str(), "blk.%d.", &layer);
  return layer;
}

// llama.cpp's tensor_category, narrowed to what the supported types consult.
enum class Category { kTokenEmbd, kOutput, kAttnV, kAttnK, kAttnOutput, kFfnDown, kOther };

Category category_of(const std::string& n) {
  if (n == "output.weight") return Category::kOutput;
  if (n == "token_embd.weight") return Category::kTokenEmbd;
  if (contains(n, "attn_qkv.weight") || contains(n, "attn_kv_b.weight") || contains(n, "attn_v.weight"))
    return Category::kAttnV;
  if (contains(n, "attn_k.weight")) return Category::kAttnK;
  if (contains(n, "attn_output.weight")) return Category::kAttnOutput;
  if (contains(n, "ffn_down")) return Category::kFfnDown;
  return Category::kOther;
}

// tensor_allows_quantization, for the tensor names of the architectures this engine runs.
bool allows_quantization(const GgufTensorInfo& t) {
  const std::string& n = t.name;
  if (t.n_dims < 2) return false;
  bool q = n.size() >= 6 && n.compare(n.size() - 6, 6, "weight") == 0;
  q &= !contains(n, "_norm.weight");
  q &= !contains(n, "ffn_gate_inp.weight");
  q &= n != "position_embd.weight" && n != "token_types.weight";
  q &= !contains(n, "ssm_conv1d") && !contains(n, "attn_rel_b.weight");
  return q;
}

bool is_quantized(DType t) { return dtype_traits(t).block_size > 1; }

struct Plan {
  explicit Plan(const Ftype& f) : ftype(f) {}
  const Ftype& ftype;
  std::string arch;
  int n_layer = 0;
  int n_expert = 0;
  bool is_70b = false;  // llama.cpp's LLM_TYPE_70B: llama, 80 layers, GQA
  bool tied_embeddings = true;
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int i_ffn_down = 0;
};

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

// tensor_type_fallback: rows must be whole blocks of the type.
DType fallback(const GgufTensorInfo& t, DType type) {
  const int64_t ncols = t.ne[0];
  if (ncols % dtype_traits(type).block_size == 0) return type;
  DType ret = DType::F16;
  if (type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K) ret = DType::Q8_0;
  if (ncols % dtype_traits(ret).block_size != 0) ret = DType::F16;
  std::fprintf(stderr, "moe quantize: %s: %lld columns are not a multiple of %lld for %s, using %s\n",
               t.name.c_str(), static_cast<long long>(ncols),
               static_cast<long long>(dtype_traits(type).block_size), ggml_name(type).c_str(),
               ggml_name(ret).c_str());
  return ret;
}

// llama_tensor_get_type (+ _impl) for the file types above. Must be called in file order: it
// advances the attn_v and ffn_down counters as llama.cpp does.
DType target_type(Plan& p, const GgufTensorInfo& t) {
  if (!allows_quantization(t)) return t.type;
  DType type = p.ftype.dtype;
  if (!is_quantized(type)) return type;  // F16 / BF16: every quantizable tensor, no mixture rules
  const Category cat = category_of(t.name);
  const bool k_m = p.ftype.file_type == 15;
  if (cat == Category::kOutput || (p.tied_embeddings && cat == Category::kTokenEmbd)) {
    if (t.ne[0] % dtype_traits(type).block_size != 0) {
      type = DType::Q8_0;
    } else if (type != DType::Q8_0) {
      type = DType::Q6_K;
    }
  } else if (cat == Category::kAttnV) {
    if (k_m && use_more_bits(p.i_attention_wv, p.n_attention_wv)) type = DType::Q6_K;
    if (p.is_70b && type == DType::Q4_K) type = DType::Q5_K;
    if (p.n_expert == 8) type = DType::Q8_0;
    ++p.i_attention_wv;
  } else if (cat == Category::kAttnK) {
    if (p.n_expert == 8) type = DType::Q8_0;
  } else if (cat == Category::kFfnDown) {
    int i_layer = p.i_ffn_down;
    if (p.n_expert > 1) {
      i_layer = layer_of(t.name);
      MOE_CHECK(i_layer >= 0 && i_layer < p.n_layer, "bad layer ", i_layer, " for tensor ", t.name);
    }
    if (k_m) {
      if (p.arch == "falcon") {
        type = i_layer < p.n_layer / 16            ? DType::Q6_K
               : use_more_bits(i_layer, p.n_layer) ? DType::Q5_K
                                                   : DType::Q4_K;
      } else if (use_more_bits(i_layer, p.n_layer)) {
        type = DType::Q6_K;
      }
    }
    ++p.i_ffn_down;
  } else if (cat == Category::kAttnOutput) {
    if (p.arch != "falcon" && p.n_expert == 8 && k_m) type = DType::Q5_K;
  }
  return fallback(t, type);
}

bool can_dequantize(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

// Source rows -> f32 -> target rows, rows split over the pool (each row is independent, so the
// bytes do not depend on the thread count).
std::vector<uint8_t> requantize(const GgufFile& in, const GgufTensorInfo& t, DType to, ThreadPool& pool) {
  const uint8_t* src = in.tensor_data(t);
  if (t.type == to) return std::vector<uint8_t>(src, src + t.n_bytes);
  MOE_CHECK(can_dequantize(t.type), in.name(), ": tensor '", t.name, "' has type ", dtype_name(t.type),
            ", which cannot be dequantized for requantizing to ", dtype_name(to));
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
  std::string s = "[";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "]";
}

void run_quantize(const QuantizeArgs& a) {
  const Ftype& ftype = parse_ftype(a.type);
  std::error_code ec;
  MOE_CHECK(std::filesystem::is_regular_file(a.input, ec), a.input, ": no such file");
  MOE_CHECK(!std::filesystem::exists(a.output, ec) || !std::filesystem::equivalent(a.input, a.output, ec),
            a.output, ": the output would overwrite the input");
  const std::unique_ptr<GgufFile> in = GgufFile::open(a.input);

  Plan plan(ftype);
  plan.arch = in->get_string("general.architecture", "");
  const std::string p = plan.arch + ".";
  plan.n_layer = static_cast<int>(in->get_int(p + "block_count", 0));
  plan.n_expert = static_cast<int>(in->get_int(p + "expert_count", 0));
  plan.is_70b = plan.arch == "llama" && plan.n_layer == 80 &&
                in->get_int(p + "attention.head_count", 0) != in->get_int(p + "attention.head_count_kv", 0);

  // llama_model_loader's weights_map order: by layer (non-layer tensors first), then name.
  std::vector<const GgufTensorInfo*> order;
  for (const GgufTensorInfo& t : in->tensors()) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const GgufTensorInfo* x, const GgufTensorInfo* y) {
    const int lx = layer_of(x->name), ly = layer_of(y->name);
    return lx != ly ? lx < ly : x->name < y->name;
  });
  for (const GgufTensorInfo* t : order) {
    const Category c = category_of(t->name);
    if (c == Category::kAttnV) ++plan.n_attention_wv;
    if (c == Category::kOutput) plan.tied_embeddings = false;
  }

  GgufWriter w;  // alignment 32, as llama.cpp writes
  for (const auto& [key, value] : in->metadata()) {
    if (key != "general.alignment" && key.rfind("split.", 0) != 0) w.set(key, value);
  }
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set("general.file_type", GgufValue::u32(ftype.file_type));

  ThreadPool pool(a.threads);
  size_t total_in = 0, total_out = 0;
  const int n = static_cast<int>(order.size());
  for (int i = 0; i < n; ++i) {
    const GgufTensorInfo& t = *order[i];
    const DType to = target_type(plan, t);
    std::fprintf(stderr, "[%3d/%3d] %-36s %5s -> %-5s %s\n", i + 1, n, t.name.c_str(),
                 ggml_name(t.type).c_str(), ggml_name(to).c_str(), shape_of(t).c_str());
    const std::vector<uint8_t> bytes = requantize(*in, t, to, pool);
    w.add_tensor(t.name, to, std::vector<int64_t>(t.ne, t.ne + t.n_dims), bytes.data(), bytes.size());
    total_in += t.n_bytes;
    total_out += bytes.size();
  }
  w.write(a.output);
  std::printf("%s: %s, %d tensors, %.2f MiB -> %.2f MiB\n", a.output.c_str(), ftype.name, n,
              static_cast<double>(total_in) / (1024.0 * 1024.0),
              static_cast<double>(total_out) / (1024.0 * 1024.0));
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a GGUF model (llama.cpp's llama-quantize rules)");
  auto a = std::make_shared<QuantizeArgs>();
  cmd->add_option("input", a->input, "GGUF model to read (never modified)")->required();
  cmd->add_option("output", a->output, "GGUF file to write (atomically)")->required();
  cmd->add_option("type", a->type, "Q8_0, Q4_0, Q4_K_M, Q6_K, F16 or BF16 (case-insensitive)")->required();
  cmd->add_option("-t,--threads", a->threads, "threads (default: all)");
  cmd->callback([a] { run_quantize(*a); });
}

}  // namespace moe::cli
