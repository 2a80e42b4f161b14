// Locating the shared test data (../shared/testdata, or $MOE_TESTDATA) and the built `moe` binary.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace moe::test {

// Absolute path of a file under the test data folder; fails the test (throws) with a clear
// message naming the path when it is missing. Never downloads anything.
std::string testdata(const std::string& relative);

// Path of the `moe` binary built alongside the tests.
std::string moe_binary();

// Runs a shell command, returns its exit code and fills *out with stdout (stderr too if merge).
int run_command(const std::string& cmd, std::string* out);

// A fresh temporary directory for one test, removed by the caller when wanted.
std::string temp_dir(const std::string& tag);

std::string read_file(const std::string& path);

// The message of the moe::Error that fn throws; fails the test if it throws nothing.
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected moe::Error";
  return "";
}

}  // namespace moe::test
