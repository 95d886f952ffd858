#pragma once
// How subcommands plug into the `accel` binary: each file under tools/accel
// defines one register_<name>(app) that adds its subcommand and callback;
// the callback stores its exit status with set_exit_code().
#include <string>

#include <CLI/CLI.hpp>

namespace accel::cli {

void register_all(CLI::App& app);
void set_exit_code(int code);
int exit_code();
std::string version();

void register_env(CLI::App& app);

}  // namespace accel::cli
