#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "formats/gguf.h"

namespace moe::cli {

namespace {

void run_info(const std::string& path, bool all) {
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
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print a model file's metadata and tensor table");
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  cmd->add_option("file", *path, "GGUF file")->required();
  cmd->add_flag("--all", *all, "print arrays in full");
  cmd->callback([path, all] { run_info(*path, *all); });
}

}  // namespace moe::cli
