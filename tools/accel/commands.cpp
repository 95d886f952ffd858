#include "commands.h"

#include "accel/version.h"

namespace accel::cli {
namespace {
int g_exit_code = 0;
}

void set_exit_code(int code) { g_exit_code = code; }
int exit_code() { return g_exit_code; }
std::string version() { return accel::kVersion; }

void register_all(CLI::App& app) {
  register_launch(app);
  register_config(app);
  register_env(app);
  register_test(app);
  register_estimate_memory(app);
  register_merge_weights(app);
}

}  // namespace accel::cli
