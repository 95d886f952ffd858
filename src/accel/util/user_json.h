#pragma once
// Reading JSON that comes from a user's file (DeepSpeed configs,
// accel_state.json, optimizer.json, zero_layout.json, scheduler and loader
// states): its depth is bounded before it is parsed (json_depth.h) and a
// value quoted back in an error message is cut short (excerpt.h). Private
// to the library: nlohmann::json is not part of accel's public API.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "accel/util/excerpt.h"
#include "accel/util/json_depth.h"

namespace accel {

/// Parses `text`; throws std::invalid_argument "nests deeper than ..." or
/// "not valid JSON: <parser message, cut short>", for the caller to prefix
/// with the file's name.
nlohmann::json parse_user_json(std::string_view text, size_t max_depth = kMaxJsonDepth);

/// `object[key]` when `object` is an object holding a string there, else
/// "". For checks such as `"format": "accel-zero-v1"`, where nlohmann's
/// `value(key, "")` would throw a type_error on a number or an array.
std::string string_member(const nlohmann::json& object, const std::string& key);

/// A value as compact JSON for a message, cut to `max_bytes` (see excerpt()).
std::string json_excerpt(const nlohmann::json& value, size_t max_bytes = kExcerptBytes);

}  // namespace accel
