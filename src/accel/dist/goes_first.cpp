#include "accel/dist/goes_first.h"

#include "accel/dist/collectives.h"

namespace accel {

// Two barriers in all: the others pass the first once the first process
// reaches its second, at the end of its scope.
GoesFirst::GoesFirst(bool first) : first_(first) {
  if (!first_) wait_for_everyone();
}

GoesFirst::~GoesFirst() {
  if (first_) wait_for_everyone();
}

}  // namespace accel
