// The `moe` command: one binary, one subcommand per job.
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"moe.cpp: train, quantize and serve DeepSeek-R1-style Mixture-of-Experts models", "moe"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moe 0.1.0");
  moe::cli::add_info_command(app);
  moe::cli::add_run_command(app);
  moe::cli::add_tokenize_command(app);
  moe::cli::add_logits_command(app);
  moe::cli::add_chat_template_command(app);
  moe::cli::add_init_command(app);
  moe::cli::add_convert_command(app);
  moe::cli::add_chat_command(app);
  moe::cli::add_quantize_command(app);
  moe::cli::add_bench_command(app);
  moe::cli::add_serve_command(app);
  moe::cli::add_tokenizer_train_command(app);
  moe::cli::add_data_command(app);
  moe::cli::add_train_command(app);
  // CLI11 reports an unknown first word as "a subcommand is required"; name the word instead.
  const auto is_subcommand = [&](const std::string& word) {
    for (const CLI::App* sub : app.get_subcommands({}))
      if (sub->check_name(word)) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_subcommand(argv[1])) {
    std::fprintf(stderr, "moe: error: unknown subcommand '%s' (see moe --help)\n", argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "moe: error: %s (see moe --help)\n", msg.c_str());
    return 2;
  } catch (const moe::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "moe: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}

namespace moe::cli {

std::string read_stdin() {
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) s.append(buf, n);
  return s;
}

}  // namespace moe::cli
