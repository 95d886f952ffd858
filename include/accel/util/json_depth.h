#pragma once
// How deep a JSON text nests, found without building or recursing into
// it. Every reader of a user's JSON file checks this before parsing: the
// parsed tree is walked recursively later (comparisons, dumps, error
// messages), so a file 200,000 levels deep would overflow the stack there.
#include <cstddef>
#include <string_view>

#include "accel/util/export.h"

namespace accel {

/// The deepest nesting any accel file format needs, with room to spare
/// (DeepSpeed configs and Hugging Face config.json nest 3 or 4 levels).
inline constexpr size_t kMaxJsonDepth = 64;

/// Throws std::invalid_argument ("nests deeper than <max_depth> levels of
/// arrays and objects (at byte N)") when `text` opens more than
/// `max_depth` arrays or objects inside one another. Brackets inside
/// strings do not count. One linear pass, no recursion; says nothing about
/// whether the text is otherwise valid JSON.
ACCEL_API void check_json_depth(std::string_view text, size_t max_depth = kMaxJsonDepth);

}  // namespace accel
