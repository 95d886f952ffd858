#pragma once
// GoesFirst: Accelerate's `with accelerator.main_process_first():` as a
// scope. The process that goes first runs the scope's body while the
// others wait at a barrier; when it leaves the scope the others run theirs
// (e.g. rank 0 downloads or builds a cache, the others then read it).
// Every process must enter and leave the scope.
//
//   {
//     auto first = acc.main_process_first();
//     dataset = load_or_build_cache(path);
//   }
#include "accel/util/export.h"

namespace accel {

class ACCEL_API [[nodiscard]] GoesFirst {
 public:
  /// `first`: this process is the one that goes first.
  explicit GoesFirst(bool first);
  ~GoesFirst();
  GoesFirst(const GoesFirst&) = delete;
  GoesFirst& operator=(const GoesFirst&) = delete;

 private:
  bool first_;
};

}  // namespace accel
