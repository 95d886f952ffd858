#include "accel/tracking/comet_messages.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "accel/util/check.h"

namespace accel::comet {
namespace {

constexpr char32_t kReplacement = 0xFFFD;

// The code point starting at text[i] and its length in bytes; a byte that
// does not start a well-formed UTF-8 sequence is U+FFFD of length 1.
std::pair<char32_t, size_t> decode(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  if (lead < 0x80) return {lead, 1};
  size_t length;
  char32_t cp, min;
  if ((lead & 0xE0) == 0xC0) {
    length = 2, cp = lead & 0x1F, min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3, cp = lead & 0x0F, min = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    return {kReplacement, 1};
  }
  if (i + length > text.size()) return {kReplacement, 1};
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return {kReplacement, 1};
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Overlong forms, UTF-16 surrogates and values past Unicode are not UTF-8.
  if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return {kReplacement, 1};
  return {cp, length};
}

void append_u_escape(std::string& out, unsigned unit) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "\\u%04x", unit);
  out += buffer;
}

std::string step_json(std::optional<int64_t> step) { return step ? std::to_string(*step) : "null"; }

std::string header_json(const Stamp& stamp) {
  return "\"local_timestamp\":" + std::to_string(stamp.timestamp_ms) +
         ",\"message_id\":" + std::to_string(stamp.message_id);
}

}  // namespace

std::string truncate(const std::string& text, size_t max_characters) {
  std::vector<size_t> starts;  // the byte offset of each character
  for (size_t i = 0; i < text.size(); i += decode(text, i).second) starts.push_back(i);
  if (starts.size() <= max_characters) return text;
  // As comet_ml: the kept head and the marker together are max_characters long.
  if (max_characters < kTruncated.size()) return text.substr(0, starts[max_characters]);
  return text.substr(0, starts[max_characters - kTruncated.size()]) + std::string(kTruncated);
}

std::string python_float(double x) {
  ACCEL_CHECK_ARG(std::isfinite(x), "python_float: ", x, " is not finite");
  char buffer[64];
  // Shortest round-trip digits, as Python's repr finds them: "d.ddde±XX".
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::scientific);
  ACCEL_CHECK(error == std::errc(), "python_float: to_chars failed");
  std::string_view text(buffer, static_cast<size_t>(end - buffer));
  std::string out;
  if (text.front() == '-') {
    out = "-";
    text.remove_prefix(1);
  }
  const size_t e = text.find('e');
  std::string digits;
  for (char c : text.substr(0, e))
    if (c != '.') digits += c;
  const int exponent = std::atoi(std::string(text.substr(e + 1)).c_str());
  const int count = static_cast<int>(digits.size());
  // repr's rule (float_repr_style "short", format code 'r'): positional
  // while the exponent is from -4 to 15, with ".0" when there is no fraction.
  if (exponent >= 0 && exponent < 16) {
    const int whole = exponent + 1;
    if (count <= whole)
      out += digits + std::string(static_cast<size_t>(whole - count), '0') + ".0";
    else
      out += digits.substr(0, static_cast<size_t>(whole)) + "." + digits.substr(static_cast<size_t>(whole));
  } else if (exponent < 0 && exponent >= -4) {
    out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (count > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return out;
}

std::string float_json(double x) {
  if (std::isnan(x)) return "\"NaN\"";
  if (std::isinf(x)) return x > 0 ? "\"Infinity\"" : "\"-Infinity\"";
  return python_float(x);
}

std::string string_json(std::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto [cp, length] = decode(text, i);
    i += length;
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (cp >= 0x20 && cp < 0x7F) {
      out += static_cast<char>(cp);
    } else if (cp < 0x10000) {
      append_u_escape(out, cp);
    } else {
      const char32_t v = cp - 0x10000;
      append_u_escape(out, 0xD800 + (v >> 10));
      append_u_escape(out, 0xDC00 + (v & 0x3FF));
    }
  }
  return out + "\"";
}

std::string metric_line(const Stamp& stamp, const std::string& name, const MetricValue& value,
                        std::optional<int64_t> step) {
  const std::string value_json = std::holds_alternative<int64_t>(value) ? std::to_string(std::get<int64_t>(value))
                                                                        : float_json(std::get<double>(value));
  return "{\"payload\":{" + header_json(stamp) +
         ",\"metric\":{\"epoch\":null,\"metricName\":" + string_json(truncate(name, kMaxKeyLength)) +
         ",\"metricValue\":" + value_json + ",\"step\":" + step_json(step) + "}},\"type\":\"metric_msg\"}";
}

std::string config_value_json(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>)
          return v ? "true" : "false";
        else if constexpr (std::is_same_v<T, int64_t>)
          return std::to_string(v);
        else if constexpr (std::is_same_v<T, double>)
          return float_json(v);
        else
          return string_json(truncate(v, kMaxValueLength));
      },
      value);
}

std::string parameter_line(const Stamp& stamp, const std::string& name, const std::string& value_json,
                           std::optional<int64_t> step) {
  return "{\"payload\":{" + header_json(stamp) +
         ",\"param\":{\"paramName\":" + string_json(truncate(name, kMaxKeyLength)) + ",\"paramValue\":" + value_json +
         ",\"source\":\"manual\",\"step\":" + step_json(step) + "}},\"type\":\"parameter_msg\"}";
}

std::string log_other_line(int64_t message_id, const std::string& key, const std::string& value_json) {
  return "{\"payload\":{\"key\":" + string_json(truncate(key, kMaxKeyLength)) +
         ",\"message_id\":" + std::to_string(message_id) + ",\"value\":" + value_json + "},\"type\":\"log_other\"}";
}

std::string experiment_json(const ExperimentFile& file) {
  return "{\"offline_id\": " + string_json(file.offline_id) + ", \"project_name\": " + string_json(file.project_name) +
         ", \"start_time\": " + std::to_string(file.start_time_ms) +
         ", \"stop_time\": " + std::to_string(file.stop_time_ms) +
         ", \"tags\": [], \"workspace\": " + (file.workspace ? string_json(*file.workspace) : "null") +
         ", \"resume_strategy\": " + string_json(file.resume_strategy) +
         ", \"customer_error_reported\": " + (file.customer_error_message ? "true" : "false") +
         ", \"customer_error_message\": " +
         (file.customer_error_message ? string_json(*file.customer_error_message) : "null") +
         ", \"user_provided_experiment_key\": " + (file.user_provided_experiment_key ? "true" : "false") +
         ", \"comet_start_sourced\": true}";
}

}  // namespace accel::comet
