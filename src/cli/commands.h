// Each subcommand registers its options and callback on the top-level app. Callbacks throw
// moe::Error for bad input; main() turns that into one line on stderr and a non-zero exit.
#pragma once

#include <CLI/CLI.hpp>

#include "runtime/sampler.h"

namespace moe::cli {

void add_info_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_logits_command(CLI::App& app);
void add_chat_template_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_tokenizer_train_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_train_command(CLI::App& app);

// Adds --temp, --top-k, --top-p, --min-p and the penalty options bound to s.
void add_sampling_options(CLI::App* cmd, SamplingParams& s);

// Reads all of stdin (for "-" arguments).
std::string read_stdin();

}  // namespace moe::cli
