#pragma once
// The `accel config` questionnaire: Accelerate's questions for a local
// machine (type of machine, machines, processes, GPUs, DeepSpeed, FSDP,
// mixed precision). Answers are read line by line, so it works from a
// terminal and from piped answers; an empty line (or the end of input)
// takes the default shown in brackets, a bad answer is asked again. Each
// question also has a flag (`accel config --num_processes 4 ...`), so that
// scripts need not pipe answers.
#include <iosfwd>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "accel/launch/cluster_config.h"

namespace accel::cli {

/// A question's flag: `accel config --<key> ANSWER` answers it without asking.
struct QuestionFlag {
  const char* key;
  const char* help;
};
/// Every question's flag, in the order they are asked.
const std::vector<QuestionFlag>& question_flags();

class Questionnaire {
 public:
  /// `answers`: key -> answer (from the flags), taken instead of asking and
  /// checked the same way, a bad one an error naming the flag;
  /// `defaults_only`: questions without an answer take their default
  /// instead of reading `in` (no prompt is printed).
  Questionnaire(std::istream& in, std::ostream& out, std::map<std::string, std::string> answers = {},
                bool defaults_only = false)
      : in_(in), out_(out), answers_(std::move(answers)), defaults_only_(defaults_only) {}
  std::string text(const std::string& key, const std::string& question, const std::string& fallback);
  /// An integer from `min` to `max` (asked again when the answer is not one;
  /// a count of machines or processes is at least 1, a port at most 65535).
  long integer(const std::string& key, const std::string& question, long fallback,
               long min = std::numeric_limits<int>::min(), long max = std::numeric_limits<int>::max());
  double number(const std::string& key, const std::string& question, double fallback);
  bool yes_no(const std::string& key, const std::string& question, bool fallback);
  /// Options answered by index or by value; returns the chosen value.
  std::string choose(const std::string& key, const std::string& question, const std::vector<std::string>& options,
                     size_t fallback = 0);
  /// Answers given for questions that the other answers left unasked.
  std::vector<std::string> unused_answers() const;

 private:
  std::string ask(const std::string& key, const std::string& question);
  void reject(const std::string& key, const std::string& answer, const std::string& expected,
              const std::string& question, int tries);
  std::istream& in_;
  std::ostream& out_;
  std::map<std::string, std::string> answers_;
  bool defaults_only_;
  bool given_ = false;  // the last answer came from a flag
};

/// Asks every question and returns the config Accelerate's own
/// questionnaire would write for the same answers.
launch::ClusterConfig ask_cluster_config(Questionnaire& q);

}  // namespace accel::cli
