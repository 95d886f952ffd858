#pragma once
// The comparison the tests of a model split over ranks (pipeline stages,
// tensor slices) end with: this rank's run against the one-process run
// after the same steps. `Trace` has `losses` and `norms` (one a step) and
// `params` (name -> whole tensor, only those this rank holds).
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "accel/dist/collectives.h"
#include "support/tensors.h"

namespace accel::testing {

/// Losses and gradient norms within 1e-5 each step, clipping active at the
/// first step (norm above `max_norm`), every parameter this rank holds
/// within 1e-5 of the reference, and every reference parameter held by some
/// rank (a collective: every rank calls it).
template <class Trace>
void expect_split_run_matches(const Trace& ref, const Trace& got, double max_norm) {
  ASSERT_EQ(got.losses.size(), ref.losses.size());
  for (size_t s = 0; s < ref.losses.size(); ++s) {
    EXPECT_NEAR(got.losses[s], ref.losses[s], 1e-5) << "loss at step " << s;
    EXPECT_NEAR(got.norms[s], ref.norms[s], 1e-5) << "gradient norm at step " << s;
  }
  EXPECT_GT(ref.norms[0], max_norm) << "clipping must act, or the global norm is untested";
  for (const auto& [name, value] : got.params) {
    ASSERT_TRUE(ref.params.count(name)) << name;
    EXPECT_EQ(value.sizes(), ref.params.at(name).sizes()) << name;
    EXPECT_LT(max_diff(value, ref.params.at(name)), 1e-5) << name;
  }
  // Together the ranks checked every parameter.
  std::string names;
  for (const auto& [name, value] : got.params) names += name + "\n";
  std::set<std::string> seen;
  for (const auto& part : accel::gather_object(names)) {
    size_t begin = 0;
    for (size_t end; (end = part.find('\n', begin)) != std::string::npos; begin = end + 1)
      seen.insert(part.substr(begin, end - begin));
  }
  for (const auto& [name, value] : ref.params) EXPECT_TRUE(seen.count(name)) << name << " is on no stage";
}

}  // namespace accel::testing
