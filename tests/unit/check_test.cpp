// util/check.h: the exception type says who is to blame, the message is the
// parts written in order, and the parts cost nothing when the check passes.
#include <gtest/gtest.h>

#include "accel/util/check.h"
#include "support/errors.h"

namespace {

using accel::testing::error_of;

TEST(Check, EachMacroThrowsItsExceptionWithThePartsInOrder) {
  const int world_size = 0;
  EXPECT_EQ(error_of<std::invalid_argument>(
                [&] { ACCEL_CHECK_ARG(world_size >= 1, "world_size is ", world_size, ", expected >= 1"); }),
            "world_size is 0, expected >= 1");
  EXPECT_EQ(error_of<std::runtime_error>([&] { ACCEL_CHECK(false, "rank ", 3, " exited with ", "code ", 2); }),
            "rank 3 exited with code 2");
  // logic_error is not a runtime_error: a caller can tell misuse apart.
  EXPECT_EQ(error_of<std::logic_error>([&] { ACCEL_CHECK_STATE(1 + 1 == 3, "call prepare() first"); }),
            "call prepare() first");
  EXPECT_EQ(error_of<std::out_of_range>([&] { accel::fail<std::out_of_range>("index ", 7, " of ", 4); }),
            "index 7 of 4");
}

TEST(Check, PartsAreEvaluatedOnlyWhenTheCheckFails) {
  int evaluated = 0;
  auto part = [&] {
    ++evaluated;
    return "x";
  };
  ACCEL_CHECK_ARG(true, part());
  ACCEL_CHECK(true, part());
  EXPECT_EQ(evaluated, 0);
  EXPECT_THROW(ACCEL_CHECK(false, part()), std::runtime_error);
  EXPECT_EQ(evaluated, 1);
}

TEST(Check, IsOneStatementInsideIfElse) {
  // Without braces, an else after the macro binds to the caller's if.
  bool took_else = false;
  if (false)
    ACCEL_CHECK(false, "never");
  else
    took_else = true;
  EXPECT_TRUE(took_else);
}

}  // namespace
