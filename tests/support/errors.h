#pragma once
// Checking a refusal: the message of the exception a call throws.
//
//   expect_error<std::invalid_argument>([&] { parse("x"); }, {"'x'", "expected"});
//   const std::string m = error_of([&] { acc.load_state(dir); });
//
// A failure is reported at the caller's line (std::source_location), and an
// exception of another type than E is not caught: it fails the test too.
#include <exception>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace accel::testing {

namespace detail {

template <class E, class F>
std::optional<std::string> message_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

/// A message as a failure shows it: the first 1000 characters of a longer
/// one (a refusal that quotes a hostile value whole would flood the log).
std::string shown(const std::string& message);

}  // namespace detail

/// The message of the E that `f()` throws; a test failure (and "") when it
/// returns normally.
template <class E = std::exception, class F>
std::string error_of(F&& f, std::source_location where = std::source_location::current()) {
  auto message = detail::message_of<E>(std::forward<F>(f));
  if (!message) {
    ADD_FAILURE_AT(where.file_name(), where.line()) << "no exception";
    return {};
  }
  return *message;
}

/// Expects `f()` to throw an E whose message holds every one of `parts`;
/// returns the message for further checks.
template <class E = std::exception, class F>
std::string expect_error(F&& f, const std::vector<std::string>& parts,
                         std::source_location where = std::source_location::current()) {
  auto message = detail::message_of<E>(std::forward<F>(f));
  if (!message) {
    ADD_FAILURE_AT(where.file_name(), where.line())
        << "no exception; expected one mentioning '" << (parts.empty() ? "" : parts.front()) << "'";
    return {};
  }
  for (const auto& part : parts)
    if (message->find(part) == std::string::npos)
      ADD_FAILURE_AT(where.file_name(), where.line()) << "'" << part << "' not in: " << detail::shown(*message);
  return *message;
}

}  // namespace accel::testing
