// `accel launch [flags] PROGRAM [ARGS...]`: Accelerate's launcher for
// LibTorch programs. The flags are Accelerate's (launch_args.h); the
// decisions and the workers' environment are Accelerate's (launch_plan.h);
// supervision is accel::WorkerGroup (run.h).
#include <iostream>
#include <memory>

#include "accel/launch/launch_plan.h"
#include "accel/launch/run.h"
#include "accel/util/check.h"
#include "commands.h"

namespace accel::cli {
namespace {

void print_defaults_used(const launch::LaunchPlan& plan) {
  if (plan.defaults_used.empty()) return;
  std::cerr << "The following values were not passed to `accel launch` and had defaults used instead:\n";
  for (const auto& line : plan.defaults_used) std::cerr << line << "\n";
  std::cerr << "To avoid this warning pass in values for each of the problematic parameters or run `accel config`."
            << std::endl;
}

}  // namespace

void add_launch_flags(CLI::App& cmd, launch::LaunchArgs& args) {
  for (const auto& f : launch::launch_flags()) {
    std::string names = "--" + f.name;
    std::string dashed = f.name;
    for (auto& c : dashed)
      if (c == '_') c = '-';
    if (dashed != f.name) names += ",--" + dashed;
    if (f.name == "tee") names = "-t," + names;
    if (f.name == "quiet") names = "-q," + names;
    if (f.name == "module") names = "-m," + names;
    const std::string name = f.name;
    std::string help = f.help;
    if (!f.choices.empty()) {
      help += " {";
      for (size_t i = 0; i < f.choices.size(); ++i) help += (i ? "," : "") + f.choices[i];
      help += "}";
    }
    if (f.kind == launch::FlagSpec::Kind::store_true) {
      cmd.add_flag_callback(
          names, [&args, name] { args.set_flag(name, ""); }, help);
    } else {
      cmd.add_option_function<std::string>(
          names, [&args, name](const std::string& v) { args.set_flag(name, v); }, help);
    }
  }
}

launch::LaunchPlan make_plan(launch::LaunchArgs args) {
  auto plan = launch::plan_launch(std::move(args));
  print_defaults_used(plan);
  for (const auto& note : plan.notes) std::cerr << "accel launch: " << note << std::endl;
  return plan;
}

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand("launch",
                                 "Launch a program in a distributed setup (flags: Accelerate's, "
                                 "with underscores or dashes)");
  auto args = std::make_shared<launch::LaunchArgs>(launch::LaunchArgs::defaults());
  add_launch_flags(*cmd, *args);
  // Everything from the program's name on belongs to the program.
  cmd->prefix_command();
  cmd->footer("PROGRAM [ARGS...]  the program every worker runs, with its arguments");
  cmd->callback([cmd, args] {
    auto rest = cmd->remaining();
    ACCEL_CHECK_ARG(!rest.empty(), "no program to launch: accel launch [flags] PROGRAM [ARGS...]");
    args->program = rest.front();
    args->program_args.assign(rest.begin() + 1, rest.end());
    set_exit_code(launch::run_launch(make_plan(*args), std::cerr));
  });
}

}  // namespace accel::cli
