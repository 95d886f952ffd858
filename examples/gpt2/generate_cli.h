#pragma once
// `gpt2 generate ...`: the example's generation command (generate_cli.cpp).

namespace gpt2 {

/// Runs the command on argv[1..] (argv[0]: "generate"); returns the exit status.
int generate_main(int argc, char** argv);

}  // namespace gpt2
