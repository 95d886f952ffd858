#pragma once
// What a process group is made with: the communication backend and the
// timeout. Apart from process_group.h, which pulls in c10d's headers, so that
// option structs (StateOptions) can name them cheaply.
#include <chrono>
#include <string>

#include "accel/util/export.h"

namespace accel {

enum class Backend { gloo, nccl };

/// "gloo" / "nccl" (any case); throws naming the value and the choices.
ACCEL_API ACCEL_API Backend parse_backend(const std::string& name);
ACCEL_API ACCEL_API std::string to_string(Backend backend);

/// Default timeout for meeting and for collectives: Accelerate's 30 minutes.
inline constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::minutes(30);

}  // namespace accel
