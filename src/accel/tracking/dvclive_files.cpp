#include "accel/tracking/dvclive_files.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "accel/launch/value.h"
#include "accel/util/check.h"

namespace accel::dvclive {
namespace {

// The code points of UTF-8 text; a byte that starts no valid sequence is
// taken as that code point (Latin-1), which Python would have refused.
std::u32string code_points(const std::string& text) {
  std::u32string out;
  for (size_t i = 0; i < text.size();) {
    const auto b = static_cast<unsigned char>(text[i]);
    const int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : b >= 0xC0 ? 1 : 0;
    char32_t c = extra == 0 ? b : extra == 1 ? (b & 0x1F) : extra == 2 ? (b & 0x0F) : (b & 0x07);
    bool ok = extra == 0 ? b < 0x80 : i + extra < text.size();
    for (int k = 1; ok && k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      ok = (next & 0xC0) == 0x80;
      c = (c << 6) | (next & 0x3F);
    }
    if (!ok) {
      out += static_cast<char32_t>(b);
      ++i;
    } else {
      out += c;
      i += extra + 1;
    }
  }
  return out;
}

std::string json_string(const std::string& text) {
  static const char* hex = "0123456789abcdef";
  auto u = [&](unsigned v) {
    return std::string("\\u") + hex[(v >> 12) & 15] + hex[(v >> 8) & 15] + hex[(v >> 4) & 15] + hex[v & 15];
  };
  std::string out = "\"";
  for (const char32_t c : code_points(text)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || (c >= 0x7F && c < 0x10000)) {
          out += u(c);
        } else if (c >= 0x10000) {
          const unsigned v = c - 0x10000;  // a surrogate pair, as Python writes it
          out += u(0xD800 + (v >> 10));
          out += u(0xDC00 + (v & 0x3FF));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

bool looks_like_number_or_keyword(const std::string& text) {
  const launch::Value v = launch::resolve_plain_scalar(text);
  return v.kind != launch::Value::Kind::text;
}

}  // namespace

Value metric_value(const LogValue& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  if (const auto* d = std::get_if<double>(&value)) {
    if (std::isfinite(*d)) return *d;
    return launch::python_float(*d);  // "nan", "inf", "-inf"
  }
  fail<std::invalid_argument>("not a number or text");
}

std::string python_json(const nlohmann::ordered_json& value, int indent, int depth) {
  if (value.is_object()) {
    if (value.empty()) return "{}";
    const std::string inner(static_cast<size_t>(indent * (depth + 1)), ' ');
    std::string out = "{";
    bool first = true;
    for (const auto& [key, item] : value.items()) {
      out += first ? "\n" : ",\n";
      first = false;
      out += inner + json_string(key) + ": " + python_json(item, indent, depth + 1);
    }
    return out + "\n" + std::string(static_cast<size_t>(indent * depth), ' ') + "}";
  }
  if (value.is_string()) return json_string(value.get<std::string>());
  if (value.is_number_integer()) return value.dump();
  if (value.is_number_float()) return launch::python_float(value.get<double>());
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_null()) return "null";
  fail("python_json: unexpected JSON value ", value.dump());
}

std::string tsv_field(const Value& value) {
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return launch::python_float(*d);
  const std::string& text = std::get<std::string>(value);
  if (text.find_first_of("\t\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (const char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string yaml_scalar(const ConfigValue& value) {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          return v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          if (std::isnan(v)) return ".nan";
          if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
          return launch::python_float(v);
        } else {
          // Plain only where nothing could read it as anything else: no
          // indicator characters, no edge spaces, not a number or keyword.
          bool plain = !v.empty() && v.front() != ' ' && v.back() != ' ' && !looks_like_number_or_keyword(v);
          for (size_t i = 0; plain && i < v.size(); ++i) {
            const auto c = static_cast<unsigned char>(v[i]);
            plain = c >= 0x80 || std::isalnum(c) || c == '_' || c == '.' || c == '/' || c == '+' || c == '(' ||
                    c == ')' || (c == ' ' && v[i + 1] != '#') || (c == '-' && i > 0);
          }
          if (plain) return v;
          bool printable = true;
          for (const char c : v) printable = printable && (static_cast<unsigned char>(c) >= 0x20 && c != 0x7F);
          if (printable) {  // single quotes: only ' itself needs doubling
            std::string out = "'";
            for (const char c : v) out += c == '\'' ? std::string("''") : std::string(1, c);
            return out + "'";
          }
          return json_string(v);  // double quotes with escapes: YAML reads JSON's
        }
      },
      value);
}

std::string invalid_metric_name(const std::string& name) {
  if (name.empty()) return "the name is empty";
  if (name.front() == '/') return "it starts with '/' (the file would be outside plots/metrics)";
  if (name.back() == '/' || name.find("//") != std::string::npos) return "it has an empty part between '/'";
  size_t at = 0;
  while (at <= name.size()) {
    const size_t next = std::min(name.find('/', at), name.size());
    const std::string part = name.substr(at, next - at);
    if (part == "." || part == "..") return "it has a \".\" or \"..\" part";
    at = next + 1;
  }
  return "";
}

}  // namespace accel::dvclive
