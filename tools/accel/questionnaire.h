#pragma once
// The `accel config` questionnaire: Accelerate's questions for a local
// machine (type of machine, machines, processes, GPUs, DeepSpeed, FSDP,
// mixed precision). Answers are read line by line, so it works from a
// terminal and from piped answers; an empty line (or the end of input)
// takes the default shown in brackets, a bad answer is asked again.
#include <iosfwd>
#include <limits>
#include <string>
#include <vector>

#include "accel/launch/cluster_config.h"

namespace accel::cli {

class Questionnaire {
 public:
  Questionnaire(std::istream& in, std::ostream& out) : in_(in), out_(out) {}
  std::string text(const std::string& question, const std::string& fallback);
  /// An integer from `min` to `max` (asked again when the answer is not one;
  /// a count of machines or processes is at least 1, a port at most 65535).
  long integer(const std::string& question, long fallback, long min = std::numeric_limits<int>::min(),
               long max = std::numeric_limits<int>::max());
  double number(const std::string& question, double fallback);
  bool yes_no(const std::string& question, bool fallback);
  /// Options answered by index or by value; returns the chosen value.
  std::string choose(const std::string& question, const std::vector<std::string>& options, size_t fallback = 0);

 private:
  std::string ask(const std::string& question);
  std::istream& in_;
  std::ostream& out_;
};

/// Asks every question and returns the config Accelerate's own
/// questionnaire would write for the same answers.
launch::ClusterConfig ask_cluster_config(Questionnaire& q);

}  // namespace accel::cli
