#include "support/programs.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>

#include "support/files.h"

namespace accel::testing {

std::string command_output(const std::string& command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe.get())) > 0) out.append(buf, n);
  return out;
}

pid_t start_program(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const StartOptions& options) {
  // Everything the child needs is made before fork.
  std::vector<std::string> args = argv;
  std::vector<char*> c_args;
  for (auto& a : args) c_args.push_back(a.data());
  c_args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (!options.input.empty()) dup2(open(options.input.c_str(), O_RDONLY), 0);
    const int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) _exit(126);
    for (const auto& change : options.env) apply(change);
    execv(c_args[0], c_args.data());
    _exit(127);
  }
  return pid;
}

int wait_for_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Outcome finish_program(pid_t pid, std::chrono::steady_clock::time_point started, const std::filesystem::path& output) {
  Outcome r;
  r.status = wait_for_exit(pid);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  r.output = read_file(output);
  return r;
}

Outcome run_program(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const StartOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  return finish_program(start_program(argv, output, options), started, output);
}

Outcome run_shell(const std::string& command, const std::filesystem::path& log) {
  const auto started = std::chrono::steady_clock::now();
  const int status = std::system((command + " > '" + log.string() + "' 2>&1").c_str());
  Outcome r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  r.output = read_file(log);
  return r;
}

bool wait_for_files(const std::vector<std::filesystem::path>& files, std::chrono::duration<double> timeout) {
  for (const auto until = std::chrono::steady_clock::now() + timeout; std::chrono::steady_clock::now() < until;) {
    bool all = true;
    for (const auto& f : files) all = all && std::filesystem::exists(f);
    if (all) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string test_program(const std::string& name) { return source_path("tests/programs/" + name); }

}  // namespace accel::testing
