#pragma once
// Running programs from a test: what they print, how they end.
//
//   const pid_t pid = start_program({binary_path("accel"), "launch", ...}, dir / "out.log",
//                                   {.env = {{"HF_HOME", (dir / "hf").string()}, {"RANK", std::nullopt}}});
//   EXPECT_EQ(wait_for_exit(pid), 0) << read_file(dir / "out.log");
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "support/environment.h"

namespace accel::testing {

/// What `command` prints on stdout (run by the shell); throws if it cannot start.
std::string command_output(const std::string& command);

/// How start_program starts a program; each part left empty changes nothing.
struct StartOptions {
  std::vector<EnvChange> env = {};   // applied in their order
  std::filesystem::path cwd = {};    // the working folder
  std::filesystem::path input = {};  // a file to read as stdin
};

/// Starts the program `argv[0]` (a path) with `argv` in a child process, its
/// stdout and stderr into `output`; returns the child's pid.
pid_t start_program(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const StartOptions& options = {});

/// Waits for the child `pid` to end: its exit status, or 128 + the number
/// of the signal that ended it.
int wait_for_exit(pid_t pid);

/// How a program ended.
struct Outcome {
  int status = -1;     // its exit status, or 128 + the signal that ended it
  std::string output;  // what it wrote (stdout and stderr)
  double seconds = 0;  // from its start to its end
};

/// Waits for the child `pid`, started at `started` with its output into
/// `output`: how it ended.
Outcome finish_program(pid_t pid, std::chrono::steady_clock::time_point started, const std::filesystem::path& output);

/// Starts a program as start_program does and waits for it to end.
Outcome run_program(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const StartOptions& options = {});

/// Runs `command` with the shell, its stdout and stderr into `log`: how it
/// ended (`output` is what it wrote to `log`).
Outcome run_shell(const std::string& command, const std::filesystem::path& log);

/// Whether all `files` exist within `timeout` (looked for every 20 ms).
bool wait_for_files(const std::vector<std::filesystem::path>& files, std::chrono::duration<double> timeout);

/// A script of tests/programs/ (programs the launch tests start).
std::string test_program(const std::string& name);

}  // namespace accel::testing
