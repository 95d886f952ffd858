#pragma once
// The text of DVCLive's files, as dvclive (Python) writes them: the
// summary <dir>/metrics.json (Python's json.dump with indent 4, non-ASCII
// escaped), the rows of <dir>/plots/metrics/<name>.tsv (Python's csv
// module, tab-separated), <dir>/params.yaml and dvc.yaml (ruamel.yaml's
// block style). Private to the library.
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "accel/tracking/tracker.h"

namespace accel::dvclive {

/// A logged value as DVCLive keeps it; non-finite numbers become the text
/// "nan", "inf", "-inf" (dvclive logs str() of them).
using Value = std::variant<int64_t, double, std::string>;
Value metric_value(const LogValue& value);  // throws for maps and tensors

/// Python's json.dumps(value, indent=4) of numbers (repr of floats),
/// strings (ensure_ascii: \uXXXX) and objects in their order.
std::string python_json(const nlohmann::ordered_json& value, int indent = 4, int depth = 0);

/// One field of a .tsv row as Python's csv writes it: str() of a number,
/// text quoted (its '"' doubled) when it holds a tab, '"', '\r' or '\n'.
std::string tsv_field(const Value& value);

/// A scalar of a YAML block as ruamel.yaml writes it: true/false, 42,
/// Python's repr of a float, text plain where it reads back as the same
/// text, else quoted.
std::string yaml_scalar(const ConfigValue& value);

/// Why `name` cannot name a DVCLive metric (its file would be elsewhere
/// than plots/metrics/<name>.tsv: empty, absolute, "." or ".." parts,
/// doubled or trailing '/'), or "" when it can.
std::string invalid_metric_name(const std::string& name);

}  // namespace accel::dvclive
