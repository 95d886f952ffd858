#pragma once
// The probe (tests/probe/probe.cpp): a program built on accel that other
// launchers (torchrun, accelerate launch, mpirun, srun) start; each rank
// writes what it saw as "name=value" lines to $ACCEL_PROBE_OUT.<rank>.
#include <source_location>
#include <string>

namespace accel::testing {

/// The probe program in the build tree.
std::string probe_program();

/// Expects what 2 ranks of the probe wrote to `<prefix>.<rank>`: a world of
/// 2 processes on one node, found through `source` ("torchrun", "mpi", ...),
/// on the CPU with Gloo, and a reduce, a gather and an object gather that
/// worked. `context` (the command, its output) is shown with a failure.
void expect_probe_ranks(const std::string& prefix, const std::string& source, const std::string& context,
                        std::source_location where = std::source_location::current());

}  // namespace accel::testing
