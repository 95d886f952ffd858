#include "support/peers.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>

#include "accel_test_paths.h"
#include "support/files.h"
#include "support/programs.h"

namespace accel::testing {

bool peers_required() {
  const char* v = std::getenv("ACCEL_REQUIRE_PEERS");
  return v != nullptr && std::string(v) == "1";
}

namespace {

// Runs `python -c "import a, b"`; its stderr (the ImportError) comes back.
std::optional<std::string> import_failure(const std::string& python, const std::string& modules) {
  const std::string cmd = python + " -c 'import " + modules + "' 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return "cannot run " + python;
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), buf.size(), pipe) != nullptr) out += buf.data();
  const int status = ::pclose(pipe);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
  // Python's last line names the missing module ("No module named 'x'").
  while (!out.empty() && out.back() == '\n') out.pop_back();
  const auto last = out.rfind('\n');
  return "`import " + modules + "` failed in " + python + ": " +
         (last == std::string::npos ? out : out.substr(last + 1));
}

}  // namespace

std::optional<std::string> missing_peers(std::initializer_list<const char*> modules) {
  const std::string python = ACCEL_PYTHON;
  if (python.empty()) return std::string("no .venv python configured (CMake's ACCEL_PYTHON is empty)");
  if (!std::filesystem::exists(python)) return "no .venv python at " + python;
  std::string list;
  for (const char* m : modules) list += (list.empty() ? "" : ", ") + std::string(m);
  static std::mutex mu;
  static std::map<std::string, std::optional<std::string>> checked;
  std::lock_guard<std::mutex> lock(mu);
  auto it = checked.find(list);
  if (it == checked.end()) it = checked.emplace(list, list.empty() ? std::nullopt : import_failure(python, list)).first;
  return it->second;
}

std::string venv_program(const std::string& name) {
  return (std::filesystem::path(ACCEL_PYTHON).parent_path() / name).string();
}

std::string peer_script(const std::string& name) { return source_path("tests/peer/scripts/" + name); }

const nlohmann::json& peer_script_json(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, nlohmann::json> outputs;
  std::lock_guard<std::mutex> lock(mu);
  auto it = outputs.find(name);
  if (it == outputs.end())
    it = outputs
             .emplace(name, nlohmann::json::parse(command_output(std::string(ACCEL_PYTHON) + " " + peer_script(name))))
             .first;
  return it->second;
}

nlohmann::json run_peer_script(const std::string& name, const std::vector<std::string>& args) {
  std::string command = std::string(ACCEL_PYTHON) + " " + peer_script(name);
  for (const auto& arg : args) command += " '" + arg + "'";  // the tests' own paths: no quote in them
  const std::string log = (std::filesystem::temp_directory_path() /
                           ("accel_peer_" + std::to_string(::getpid()) + "_" + std::to_string(::gettid()) + ".log"))
                              .string();
  const Outcome outcome = run_shell(command, log);
  std::filesystem::remove(log);
  if (outcome.status != 0)
    throw std::runtime_error(command + " exited with " + std::to_string(outcome.status) + ":\n" + outcome.output);
  const auto marker = outcome.output.rfind("@@RESULT@@");
  if (marker == std::string::npos) throw std::runtime_error(command + " printed no result:\n" + outcome.output);
  return nlohmann::json::parse(outcome.output.substr(marker + 10));
}

}  // namespace accel::testing
