#pragma once
// The Event messages of TensorBoard's event files, encoded by hand (field
// numbers from tensorboard/compat/proto: event.proto, summary.proto,
// tensor.proto, and the hparams plugin's api.proto and plugin_data.proto).
// Each function returns one serialized Event, ready for RecordWriter.
// What each writes is what torch.utils.tensorboard.SummaryWriter writes for
// the same call, so TensorBoard and its readers see no difference.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "accel/tracking/tracker.h"

namespace accel::tensorboard {

/// The first record of every file: file_version "brain.Event:2".
std::string file_version_event(double wall_time);
/// add_scalar: a Summary.Value with simple_value.
std::string scalar_event(const std::string& tag, double value, int64_t step, double wall_time);
/// add_text: a string tensor under "<tag>/text_summary", plugin "text".
std::string text_event(const std::string& tag, const std::string& text, int64_t step, double wall_time);

/// A histogram as TensorBoard stores one: bucket i counts the values up to
/// bucket_limit[i] (above bucket_limit[i - 1]).
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit;
  std::vector<double> bucket;
};
/// torch's make_histogram with its default ("tensorflow") bins: edges at
/// 0 and ±1e-12 * 1.1^k below 1e20, trimmed to the buckets from the first
/// to the last that hold values, with an empty bucket before them so the
/// left edge shows. Non-finite values are left out (numpy's histogram over
/// explicit edges counts none of them). Throws naming `tag` when no finite
/// value is left.
Histogram make_histogram(const std::string& tag, const std::vector<double>& values);
/// add_histogram.
std::string histogram_event(const std::string& tag, const Histogram& histogram, int64_t step, double wall_time);

/// add_hparams' three summaries (experiment, session start, session end),
/// in that order. Numbers and bools are numbers, strings strings, as torch
/// writes them.
std::vector<std::string> hparams_events(const TrackerConfig& config, double wall_time);

}  // namespace accel::tensorboard
