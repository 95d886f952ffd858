#include "accel/parallel/fsdp/freed_memory_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>

namespace accel::fsdp {

namespace {

// The guarded ranges, read by the signal handler: fixed slots of atomics
// (no allocation, no lock), so that a handler running during an update
// sees a slot either whole or empty.
struct Slot {
  std::atomic<uintptr_t> begin{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<const std::string*> message{nullptr};
};
constexpr long kSlots = 1 << 14;
Slot slots[kSlots];
struct sigaction previous {};

void on_fault(int sig, siginfo_t* info, void* context) {
  const auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (auto& s : slots) {
    const uintptr_t begin = s.begin.load(std::memory_order_acquire);
    if (begin == 0 || at < begin || at >= s.end.load(std::memory_order_acquire)) continue;
    if (const std::string* m = s.message.load(std::memory_order_acquire)) {
      // write(2) only: nothing else is safe in a signal handler.
      [[maybe_unused]] auto n = ::write(STDERR_FILENO, m->data(), m->size());
    }
    break;
  }
  // Hand on: the handler installed before ours, or the default action.
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
    previous.sa_sigaction(sig, info, context);
    return;
  }
  if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN &&
      previous.sa_handler != nullptr) {
    previous.sa_handler(sig);
    return;
  }
  ::signal(sig, SIG_DFL);  // on return the access faults again and ends the process
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGSEGV, &sa, &previous);
  });
}

}  // namespace

FreedMemoryGuard::FreedMemoryGuard(size_t nbytes, std::string what) {
  if (nbytes == 0) return;
  void* base = ::mmap(nullptr, nbytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return;
  message_ = "\naccel: this process read or wrote the parameters of " + what +
             " while they were freed (a sharded unit's parameters hold data only inside its forward and "
             "backward). Read a sharded model through Accelerator::get_state_dict(model) or save_model(model, "
             "dir), which gather it unit by unit. Stopping the process (SIGSEGV).\n";
  install_handler();
  for (long k = 0; k < kSlots; ++k) {
    uintptr_t empty = 0;
    auto& s = slots[k];
    // Claimed by setting `end` first: `begin` is what the handler tests.
    if (!s.end.compare_exchange_strong(empty, reinterpret_cast<uintptr_t>(base) + nbytes)) continue;
    s.message.store(&message_, std::memory_order_release);
    s.begin.store(reinterpret_cast<uintptr_t>(base), std::memory_order_release);
    slot_ = k;
    break;
  }
  if (slot_ < 0) {  // no room to name it: no guard
    ::munmap(base, nbytes);
    return;
  }
  base_ = base;
  bytes_ = nbytes;
}

FreedMemoryGuard::~FreedMemoryGuard() {
  if (slot_ >= 0) {
    auto& s = slots[slot_];
    s.begin.store(0, std::memory_order_release);
    s.message.store(nullptr, std::memory_order_release);
    s.end.store(0, std::memory_order_release);
  }
  if (base_) ::munmap(base_, bytes_);
}

}  // namespace accel::fsdp
