// The `accel` command line. Each subcommand lives in its own file and
// registers itself through tools/accel/commands.h.
#include <iostream>

#include <CLI/CLI.hpp>

#include "accel/util/format.h"
#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"accel: distributed and mixed-precision training for LibTorch programs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("accel ") + accel::cli::version());
  accel::cli::register_all(app);
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
