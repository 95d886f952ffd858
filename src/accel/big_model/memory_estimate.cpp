#include "accel/big_model/memory_estimate.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <numeric>

#include "accel/util/check.h"
#include "accel/util/strings.h"

namespace accel {
namespace {

struct DtypeRule {
  const char* name;
  double divisor;              // of the float32 sizes
  double training_multiplier;  // of the float32 total; 0: not trained
};

// estimate_training_usage: float32 Adam holds the model, its gradients and
// two states (4x, the optimizer step's peak); mixed precision keeps float32
// weights and states beside the half-precision copies (2x at the peak).
constexpr std::array<DtypeRule, 5> kRules = {{
    {"float32", 1, 4},
    {"float16", 2, 2},
    {"bfloat16", 2, 2},
    {"int8", 4, 0},
    {"int4", 8, 0},
}};

// Python's round(value, 2), then repr() of the float it gives: round picks
// the nearest 2-decimal number to the exact binary value (ties to even),
// repr the shortest text that reads back as the same double.
std::string python_round_2(double value) {
  char buffer[400];  // enough for any double in fixed notation
  auto rounded = std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::fixed, 2);
  double nearest = 0;
  std::from_chars(buffer, rounded.ptr, nearest);
  auto shortest = std::to_chars(buffer, buffer + sizeof buffer, nearest, std::chars_format::fixed);
  std::string text(buffer, shortest.ptr);
  if (text.find('.') == std::string::npos) text += ".0";
  return text;
}

// Python's len(): characters, not bytes (a model path may hold any).
size_t length(std::string_view text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// Python's str.center, which puts an odd margin's extra space on the left
// when the width is odd.
std::string center(const std::string& text, size_t width) {
  const size_t len = length(text);
  if (len >= width) return text;
  const size_t margin = width - len;
  const size_t left = margin / 2 + (margin & width & 1);
  return std::string(left, ' ') + text + std::string(margin - left, ' ');
}

std::string repeat(std::string_view piece, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) out += piece;
  return out;
}

// Accelerate's create_ascii_table, step for step: a title longer than the
// columns widens the last column, and the widening is counted the way
// Accelerate counts it, so that both print the same box.
std::string ascii_table(const std::vector<std::string>& headers, const std::vector<std::vector<std::string>>& rows,
                        const std::string& title) {
  constexpr std::string_view kBar = "│", kLine = "─";
  std::vector<size_t> widths;
  for (size_t i = 0; i < headers.size(); ++i) {
    size_t width = length(headers[i]);
    for (const auto& row : rows) width = std::max(width, length(row[i]));
    widths.push_back(width);
  }
  size_t diff = 0;
  auto make_row = [&](std::string_view left, std::string_view middle, std::string_view right) {
    std::string out(left);
    for (size_t i = 0; i < widths.size(); ++i) out += (i ? std::string(middle) : "") + repeat(kLine, widths[i]);
    return out + repeat(kLine, diff) + std::string(right);
  };
  const size_t columns = std::accumulate(widths.begin(), widths.end(), size_t{0});
  if (length(title) > columns) {
    const size_t separator = length(make_row("├", "┼", "┤"));
    diff = length(title) > separator ? length(title) - separator : separator - length(title);
    widths.back() += diff;
  }
  const std::string separator = make_row("├", "┼", "┤");
  std::string table = make_row("┌", "─", "┐") + "\n";
  table += std::string(kBar) + center(title, length(separator) - 2) + std::string(kBar) + "\n";
  table += make_row("├", "┬", "┤") + "\n";
  widths.back() += diff;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out(kBar);
    for (size_t i = 0; i < cells.size(); ++i) out += center(cells[i], widths[i]) + std::string(kBar);
    return out + "\n";
  };
  table += line(headers) + separator + "\n";
  for (const auto& row : rows) table += line(row);
  table += "└";
  for (size_t i = 0; i < widths.size(); ++i) table += (i ? "┴" : "") + repeat(kLine, widths[i]);
  return table + "┘";
}

}  // namespace

std::vector<std::string> estimate_dtypes() {
  std::vector<std::string> out;
  for (const auto& rule : kRules) out.emplace_back(rule.name);
  return out;
}

std::vector<std::string> default_estimate_dtypes() { return {"float32", "float16", "int8", "int4"}; }

MemoryEstimate estimate_memory(const ModelSize& size, std::string_view dtype) {
  auto rule = std::find_if(kRules.begin(), kRules.end(), [&](const DtypeRule& r) { return r.name == dtype; });
  ACCEL_CHECK_ARG(rule != kRules.end(), "unknown dtype '", dtype, "'; expected one of ", join(estimate_dtypes()));
  MemoryEstimate out;
  out.dtype = rule->name;
  out.largest_layer_bytes = size.largest_layer_bytes / rule->divisor;
  out.total_bytes = size.total_bytes / rule->divisor;
  if (rule->training_multiplier > 0) out.training_bytes = size.total_bytes * rule->training_multiplier;
  return out;
}

std::string format_bytes(double bytes) {
  for (const char* unit : {"bytes", "KB", "MB", "GB", "TB"}) {
    if (bytes < 1024.0) return python_round_2(bytes) + " " + unit;
    bytes /= 1024.0;
  }
  return python_round_2(bytes) + " PB";
}

std::string memory_table(const std::vector<MemoryEstimate>& rows, std::string_view model) {
  ACCEL_CHECK_ARG(!rows.empty(), "memory_table: no rows (Accelerate's table needs at least one dtype)");
  std::vector<std::vector<std::string>> cells;
  for (const auto& row : rows) {
    cells.push_back({row.dtype, format_bytes(row.largest_layer_bytes), format_bytes(row.total_bytes),
                     row.training_bytes ? format_bytes(*row.training_bytes) : "N/A"});
  }
  return ascii_table({"dtype", "Largest Layer", "Total Size", "Training using Adam"}, cells,
                     "Memory Usage for loading `" + std::string(model) + "`");
}

}  // namespace accel
