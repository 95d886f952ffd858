#pragma once
// Rank-aware logging (Accelerate's MultiProcessAdapter) and print.
//
// A Logger writes from the main process only unless a call asks for every
// rank; `in_order` makes every rank write in rank order (each waits for the
// previous one). Lines carry the rank: "[rank 1] INFO name: message".
// The level comes from ACCELERATE_LOG_LEVEL (debug, info, warning, error,
// critical; default info) or set_level().
#include <iostream>
#include <sstream>
#include <string>

#include "accel/util/export.h"

namespace accel {

enum class LogLevel { debug = 10, info = 20, warning = 30, error = 40, critical = 50 };

/// "debug" .. "critical" (any case); throws naming the value and the choices.
ACCEL_API LogLevel parse_log_level(const std::string& name);
ACCEL_API std::string to_string(LogLevel level);

struct ACCEL_API LogOptions {
  /// Write from the main process only (the default), else from every rank.
  bool main_process_only = true;
  /// Every rank writes, in rank order (implies main_process_only = false).
  bool in_order = false;
};

class ACCEL_API Logger {
 public:
  explicit Logger(std::string name, std::ostream* out = &std::cerr);

  void log(LogLevel level, const std::string& message, LogOptions options = {}) const;
  void debug(const std::string& m, LogOptions o = {}) const { log(LogLevel::debug, m, o); }
  void info(const std::string& m, LogOptions o = {}) const { log(LogLevel::info, m, o); }
  void warning(const std::string& m, LogOptions o = {}) const { log(LogLevel::warning, m, o); }
  void error(const std::string& m, LogOptions o = {}) const { log(LogLevel::error, m, o); }
  void critical(const std::string& m, LogOptions o = {}) const { log(LogLevel::critical, m, o); }

  void set_level(LogLevel level) { level_ = level; }
  LogLevel level() const { return level_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::ostream* out_;
  LogLevel level_;
};

/// A logger whose level is read from ACCELERATE_LOG_LEVEL (default info).
ACCEL_API Logger get_logger(const std::string& name);

/// Writes the arguments (streamed, then a newline) on the main process only.
template <class... Args>
void print(const Args&... args);

namespace detail {
ACCEL_API bool is_main_process_for_print();
}

template <class... Args>
void print(const Args&... args) {
  if (!detail::is_main_process_for_print()) return;
  std::ostringstream s;
  (s << ... << args);
  s << '\n';
  std::cout << s.str() << std::flush;
}

}  // namespace accel
