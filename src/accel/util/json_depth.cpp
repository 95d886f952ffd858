#include "accel/util/json_depth.h"

#include <stdexcept>
#include <string>

#include "accel/util/check.h"

namespace accel {

void check_json_depth(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      ++depth;
      ACCEL_CHECK_ARG(depth <= max_depth, "nests deeper than ", max_depth, " levels of arrays and objects (at byte ", i,
                      ")");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

}  // namespace accel
