#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "model/presets.h"

namespace moe::cli {

namespace {

struct InfoArgs {
  std::string path;
  std::string preset;
  bool all = false;
  bool list_presets = false;
};

void run_preset(const InfoArgs& a) {
  if (a.list_presets) {
    for (const Preset& p : presets()) std::printf("%-22s %s\n", p.name.c_str(), p.description.c_str());
    return;
  }
  const Preset& p = find_preset(a.preset);
  std::printf("%s: %s\n%s", p.name.c_str(), p.description.c_str(), describe_config(p.config).c_str());
}

void run_info(const InfoArgs& a) {
  if (a.list_presets || !a.preset.empty()) return run_preset(a);
  MOE_CHECK(!a.path.empty(), "info: give a model FILE or --preset NAME");
  const std::string& path = a.path;
  const bool all = a.all;
  const auto f = GgufFile::open(path);
  std::printf("%s: GGUF v%u, %zu metadata keys, %zu tensors, alignment %u, data at offset %zu\n",
              path.c_str(), f->version(), f->metadata().size(), f->tensors().size(), f->alignment(),
              f->data_offset());
  std::printf("\nmetadata:\n");
  for (const auto& [key, value] : f->metadata()) {
    std::string type = gguf_type_name(value.type());
    if (value.type() == GgufType::ARRAY)
      type += "[" + std::string(gguf_type_name(value.elem_type())) + "]";
    std::printf("  %-48s %-14s %s\n", key.c_str(), type.c_str(),
                value.to_display(all ? SIZE_MAX : 8).c_str());
  }
  std::printf("\ntensors:\n  %-40s %-6s %-24s %14s %12s\n", "name", "type", "shape", "offset", "bytes");
  uint64_t n_params = 0, n_bytes = 0;
  for (const GgufTensorInfo& t : f->tensors()) {
    std::string shape = "[";
    for (int i = 0; i < t.n_dims; ++i) shape += (i ? ", " : "") + std::to_string(t.ne[i]);
    shape += "]";
    std::printf("  %-40s %-6s %-24s %14llu %12zu\n", t.name.c_str(), dtype_name(t.type), shape.c_str(),
                static_cast<unsigned long long>(t.offset), t.n_bytes);
    n_params += static_cast<uint64_t>(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]);
    n_bytes += t.n_bytes;
  }
  std::printf("\n%llu parameters, %.2f MiB of tensor data\n", static_cast<unsigned long long>(n_params),
              static_cast<double>(n_bytes) / (1024.0 * 1024.0));
  // The model as this engine reads it (shape, experts, KV cache per token), when it can.
  try {
    const LoadedModel m = load_model(path);
    std::printf("\nmodel:\n%s", describe_config(m.model->config()).c_str());
  } catch (const Error& e) {
    std::printf("\nmodel: not loadable: %s\n", e.what());
  }
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print a model file's metadata and tensor table");
  auto a = std::make_shared<InfoArgs>();
  cmd->add_option("file", a->path, "GGUF file");
  cmd->add_flag("--all", a->all, "print arrays in full");
  cmd->add_option("--preset", a->preset, "describe a named model shape instead (see --presets)");
  cmd->add_flag("--presets", a->list_presets, "list the named model shapes");
  cmd->callback([a] { run_info(*a); });
}

}  // namespace moe::cli
