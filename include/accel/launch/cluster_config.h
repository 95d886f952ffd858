#pragma once
// Accelerate's launch configuration file (its ClusterConfig): the same YAML
// keys, the same default location, the same defaults, so that a file
// written by `accelerate config` works with `accel launch` as it is, and a
// file written by `accel config` works with `accelerate launch`.
//
// A file is checked when it is read: an unknown key or a value of the wrong
// type or outside its allowed set is an error naming the key, the value and
// what was expected. Accelerate's legacy keys (`fp16`, `dynamo_backend`) are
// converted as Accelerate converts them.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "accel/launch/value.h"
#include "accel/util/export.h"

namespace accel::launch {

/// A config section such as fsdp_config: key -> value.
using Section = std::map<std::string, Value>;

/// Where the default file lives: $HF_HOME/accelerate/default_config.yaml,
/// else $XDG_CACHE_HOME/huggingface/accelerate/..., else
/// ~/.cache/huggingface/accelerate/default_config.yaml.
ACCEL_API std::string default_config_path();

/// Accelerate's valid values for the choice-valued keys ("distributed_type",
/// "mixed_precision", "fsdp_config.fsdp_state_dict_type", ...), for
/// messages and for the questionnaire. Empty for keys without a fixed set.
ACCEL_API std::vector<std::string> allowed_values(const std::string& key);

class ACCEL_API ClusterConfig {
 public:
  /// Reads and checks a file (YAML, or the JSON that Accelerate's
  /// `config default` writes). Throws std::invalid_argument naming the
  /// file, the key and what was expected.
  static ClusterConfig load(const std::string& path);
  /// Same from text; `source` names it in errors.
  static ClusterConfig parse(const std::string& text, const std::string& source = "<config>");

  /// The YAML Accelerate's to_yaml_file() would write: every key that is
  /// not None, sorted, empty sections left out.
  std::string to_yaml() const;
  /// Writes to_yaml() to `path` (through a temporary file, then a rename),
  /// creating the folder.
  void save(const std::string& path) const;

  /// Fills every key Accelerate's ClusterConfig has a default for
  /// (`accelerate config update`). Keys already set are kept.
  void fill_defaults();

  /// Top-level keys; None when unset.
  Value get(const std::string& key) const;
  /// Sets a top-level key after checking it; a None value removes it.
  void set(const std::string& key, Value value);
  /// A section (fsdp_config, deepspeed_config, dynamo_config, ...); empty when unset.
  const Section& section(const std::string& name) const;
  /// Sets a key inside a section after checking it.
  void set(const std::string& section, const std::string& key, Value value);

  const std::map<std::string, Value>& values() const { return values_; }
  const std::map<std::string, Section>& sections() const { return sections_; }

  bool operator==(const ClusterConfig&) const = default;

 private:
  std::map<std::string, Value> values_;
  std::map<std::string, Section> sections_;
};

}  // namespace accel::launch
