#include "accel/data/loader_state.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

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
    throw std::invalid_argument("LoaderState: '" + quoted + "': " + e.what());
  }
  if (!j.is_object()) throw std::invalid_argument("LoaderState: '" + quoted + "' is not a JSON object");
  LoaderState s;
  for (const char* key : {"epoch", "position"}) {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < 0)
      throw std::invalid_argument(std::string("LoaderState: '") + quoted + "' needs \"" + key +
                                  "\" as an integer >= 0");
  }
  s.epoch = j["epoch"].get<int64_t>();
  s.position = j["position"].get<int64_t>();
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_unsigned() && !(j["seed"].is_number_integer() && j["seed"].get<int64_t>() >= 0))
      throw std::invalid_argument("LoaderState: '" + quoted + "' has \"seed\" that is not an integer >= 0");
    s.seed = j["seed"].get<uint64_t>();
  }
  return s;
}

}  // namespace accel
