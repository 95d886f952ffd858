#include "accel/util/user_json.h"

#include <stdexcept>

#include "accel/util/check.h"

namespace accel {

nlohmann::json parse_user_json(std::string_view text, size_t max_depth) {
  check_json_depth(text, max_depth);
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // The parser's message quotes the token it stopped at, which can be long.
    fail<std::invalid_argument>("not valid JSON: ", excerpt(e.what(), 160));
  }
}

std::string string_member(const nlohmann::json& object, const std::string& key) {
  if (!object.is_object()) return "";
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string json_excerpt(const nlohmann::json& value, size_t max_bytes) {
  return excerpt(value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), max_bytes);
}

}  // namespace accel
