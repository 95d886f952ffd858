#pragma once
// How subcommands plug into the `accel` binary: each file under tools/accel
// defines one register_<name>(app) that adds its subcommand and callback;
// the callback stores its exit status with set_exit_code(). A callback may
// throw std::exception: main() prints it as "accel: error: ..." and exits 2.
#include <string>

#include <CLI/CLI.hpp>

#include "accel/launch/launch_args.h"
#include "accel/launch/launch_plan.h"

namespace accel::cli {

void register_all(CLI::App& app);
void set_exit_code(int code);
int exit_code();
std::string version();

void register_env(CLI::App& app);
void register_launch(CLI::App& app);
void register_config(CLI::App& app);
void register_test(CLI::App& app);
void register_merge_weights(CLI::App& app);
void register_estimate_memory(CLI::App& app);

/// Adds every `accel launch` flag to `cmd`, storing into `args` (shared by launch and test).
void add_launch_flags(CLI::App& cmd, launch::LaunchArgs& args);
/// plan_launch() plus Accelerate's "defaults used" message and notes on stderr.
launch::LaunchPlan make_plan(launch::LaunchArgs args);

}  // namespace accel::cli
