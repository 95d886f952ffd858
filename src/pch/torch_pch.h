// Precompiled header shared by every accel target: the LibTorch headers
// nearly every file needs. Compiling <torch/torch.h> alone costs ~30 s on a
// CI core, so it is built once and reused (REUSE_FROM) by all targets.
#pragma once
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>
#include <vector>
