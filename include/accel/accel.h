#pragma once
// accel: Hugging Face Accelerate's counterpart for LibTorch. This umbrella
// header brings in the whole public API.
#include "accel/dist/collectives.h"
#include "accel/dist/launcher.h"
#include "accel/dist/logging.h"
#include "accel/dist/process_group.h"
#include "accel/dist/topology.h"
#include "accel/amp/autocast.h"
#include "accel/parallel/ddp.h"
#include "accel/state.h"
#include "accel/util/env.h"
