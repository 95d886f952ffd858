#include "accel/data/loader_state.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "accel/util/check.h"
#include "accel/util/user_json.h"

namespace accel {

std::string LoaderState::to_string() const {
  nlohmann::json j;
  j["epoch"] = epoch;
  j["position"] = position;
  j["seed"] = seed ? nlohmann::json(*seed) : nlohmann::json(nullptr);
  return j.dump();
}

LoaderState LoaderState::from_string(const std::string& text) {
  nlohmann::json j;
  const std::string quoted = excerpt(text);  // the state as messages quote it
  try {
    j = parse_user_json(text);
  } catch (const std::invalid_argument& e) {
    fail<std::invalid_argument>("LoaderState: '", quoted, "': ", e.what());
  }
  ACCEL_CHECK_ARG(j.is_object(), "LoaderState: '", quoted, "' is not a JSON object");
  LoaderState s;
  for (const char* key : {"epoch", "position"}) {
    ACCEL_CHECK_ARG(j.contains(key) && j[key].is_number_integer() && j[key].get<int64_t>() >= 0, "LoaderState: '",
                    quoted, "' needs \"", key, "\" as an integer >= 0");
  }
  s.epoch = j["epoch"].get<int64_t>();
  s.position = j["position"].get<int64_t>();
  if (j.contains("seed") && !j["seed"].is_null()) {
    ACCEL_CHECK_ARG(j["seed"].is_number_unsigned() || (j["seed"].is_number_integer() && j["seed"].get<int64_t>() >= 0),
                    "LoaderState: '", quoted, "' has \"seed\" that is not an integer >= 0");
    s.seed = j["seed"].get<uint64_t>();
  }
  return s;
}

}  // namespace accel
