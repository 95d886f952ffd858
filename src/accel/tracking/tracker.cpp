#include "accel/tracking/tracker.h"

namespace accel {

// Defined here so that the vtable and typeinfo live in libaccel.so: a
// tracker the user derives and the library's calls through it share them.
GeneralTracker::~GeneralTracker() = default;

}  // namespace accel
