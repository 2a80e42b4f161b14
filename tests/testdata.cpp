#include "testdata.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace moe::test {

std::string testdata(const std::string& relative) {
  const char* env = std::getenv("MOE_TESTDATA");
  const std::string root = env && *env ? env : std::string(MOE_SOURCE_DIR) + "/../shared/testdata";
  const std::string path = root + "/" + relative;
  if (!std::filesystem::exists(path))
    throw std::runtime_error("test data missing: " + path +
                             " (set MOE_TESTDATA to the shared testdata folder)");
  return path;
}

std::string moe_binary() { return MOE_BINARY; }

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
  const int status = pclose(p);
  if (out) *out = s;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string temp_dir(const std::string& tag) {
  std::string tmpl = (std::filesystem::temp_directory_path() / ("moe-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace moe::test
