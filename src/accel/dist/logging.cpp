#include "accel/dist/logging.h"

#include <algorithm>
#include <stdexcept>

#include "accel/dist/collectives.h"
#include "accel/state.h"
#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {

LogLevel parse_log_level(const std::string& name) {
  const std::string n = lower(name);
  if (n == "debug") return LogLevel::debug;
  if (n == "info") return LogLevel::info;
  if (n == "warning" || n == "warn") return LogLevel::warning;
  if (n == "error") return LogLevel::error;
  if (n == "critical" || n == "fatal") return LogLevel::critical;
  fail<std::invalid_argument>("unknown log level '", name, "': expected debug, info, warning, error or critical");
}

std::string to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "DEBUG";
    case LogLevel::info: return "INFO";
    case LogLevel::warning: return "WARNING";
    case LogLevel::error: return "ERROR";
    case LogLevel::critical: return "CRITICAL";
  }
  return "?";
}

Logger::Logger(std::string name, std::ostream* out) : name_(std::move(name)), out_(out), level_(LogLevel::info) {}

void Logger::log(LogLevel level, const std::string& message, LogOptions options) const {
  if (static_cast<int>(level) < static_cast<int>(level_)) return;
  auto& st = ProcessState::get();
  auto write = [&] {
    std::string line =
        "[rank " + std::to_string(st.rank()) + "] " + to_string(level) + " " + name_ + ": " + message + "\n";
    *out_ << line << std::flush;
  };
  if (options.in_order) {
    // Each rank writes in its turn; the barriers keep the order.
    for (int r = 0; r < st.world_size(); ++r) {
      if (r == st.rank()) write();
      wait_for_everyone();
    }
    return;
  }
  if (options.main_process_only && !st.is_main_process()) return;
  write();
}

Logger get_logger(const std::string& name) {
  Logger logger(name);
  if (auto lvl = env_string(process_env(), "ACCELERATE_LOG_LEVEL")) logger.set_level(parse_log_level(*lvl));
  return logger;
}

namespace detail {
bool is_main_process_for_print() { return ProcessState::get().is_main_process(); }
}  // namespace detail

}  // namespace accel
