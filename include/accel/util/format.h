#pragma once
// Numbers in error messages: the shortest text that reads back as the same
// double (0.1, not 0.10000000000000001), so a message quotes the value the
// user wrote.
#include <string>

namespace accel {

std::string format_double(double value);

}  // namespace accel
