// The `accel` command line. Each subcommand lives in its own file and
// registers itself through tools/accel/commands.h.
#include <iostream>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>

#include "accel/util/format.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"accel: distributed and mixed-precision training for LibTorch programs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("accel ") + accel::cli::version());
  accel::cli::register_all(app);
  // CLI11 would only say that an argument "was not expected": name the
  // command that is not one, and the ones that are.
  const auto known_commands =
      std::as_const(app).get_subcommands([](const CLI::App* sub) { return sub->get_name().rfind("__", 0) != 0; });
  const auto is_command = [&](const std::string& name) {
    for (const auto* sub : std::as_const(app).get_subcommands([](const CLI::App*) { return true; }))
      if (sub->check_name(name)) return true;
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_command(argv[1])) {
    std::string known;
    for (const auto* sub : known_commands) known += (known.empty() ? "" : ", ") + sub->get_name();
    std::cerr << "accel: unknown command '" << argv[1] << "'; expected one of: " << known
              << " (accel --help lists them)" << std::endl;
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "accel: error: " << accel::error_message(e) << std::endl;
    return 2;
  }
  return accel::cli::exit_code();
}
