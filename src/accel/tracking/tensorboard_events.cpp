#include "accel/tracking/tensorboard_events.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <variant>

#include "accel/tracking/protobuf_writer.h"
#include "accel/util/check.h"

namespace accel::tensorboard {
namespace {

// Field numbers: Event (event.proto).
constexpr int kEventWallTime = 1, kEventStep = 2, kEventFileVersion = 3, kEventSummary = 5;
// Summary (summary.proto): Summary.value; Summary.Value; SummaryMetadata and its PluginData.
constexpr int kSummaryValue = 1;
constexpr int kValueTag = 1, kValueSimpleValue = 2, kValueHisto = 5, kValueTensor = 8, kValueMetadata = 9;
constexpr int kMetadataPluginData = 1, kPluginName = 1, kPluginContent = 2;
// TensorProto (tensor.proto), TensorShapeProto, DataType (types.proto).
constexpr int kTensorDtype = 1, kTensorShape = 2, kTensorStringVal = 8;
constexpr int kShapeDim = 2, kDimSize = 1;
constexpr uint64_t kDtString = 7;
// HistogramProto.
constexpr int kHistoMin = 1, kHistoMax = 2, kHistoNum = 3, kHistoSum = 4, kHistoSumSquares = 5;
constexpr int kHistoBucketLimit = 6, kHistoBucket = 7;
// The hparams plugin: HParamsPluginData (plugin_data.proto) and api.proto.
// (version, field 1, stays 0, which proto3 does not write.)
constexpr int kHparamsExperiment = 2, kHparamsSessionStart = 3, kHparamsSessionEnd = 4;
constexpr int kExperimentHparamInfos = 4;
constexpr int kHparamInfoName = 1, kHparamInfoType = 4;
constexpr uint64_t kDataTypeString = 1, kDataTypeFloat64 = 3;
constexpr int kSessionStartHparams = 1, kSessionStartTime = 5;
constexpr int kMapKey = 1, kMapValue = 2;
constexpr int kSessionEndStatus = 1, kSessionEndTime = 2;
constexpr uint64_t kStatusSuccess = 1;
// google.protobuf.Value (struct.proto).
constexpr int kProtoValueNumber = 2, kProtoValueString = 3;

std::string event(const ProtobufWriter& value, std::optional<int64_t> step, double wall_time) {
  ProtobufWriter summary;
  summary.message(kSummaryValue, value);
  ProtobufWriter out;
  out.float64(kEventWallTime, wall_time);
  if (step) out.int64(kEventStep, *step);
  out.message(kEventSummary, summary);
  return out.data();
}

ProtobufWriter plugin_metadata(const std::string& plugin, const std::string& content) {
  ProtobufWriter data;
  data.string(kPluginName, plugin);
  if (!content.empty()) data.bytes(kPluginContent, content);
  ProtobufWriter metadata;
  metadata.message(kMetadataPluginData, data);
  return metadata;
}

// One of add_hparams' summaries: a tag and metadata, no value.
std::string hparams_event(const std::string& tag, int field, const ProtobufWriter& message, double wall_time) {
  ProtobufWriter content;
  // version 0, proto3's default, is not written (torch's bytes leave it out too).
  content.message(field, message);
  ProtobufWriter value;
  value.string(kValueTag, tag);
  value.message(kValueMetadata, plugin_metadata("hparams", content.data()));
  return event(value, std::nullopt, wall_time);
}

}  // namespace

std::string file_version_event(double wall_time) {
  ProtobufWriter out;
  out.float64(kEventWallTime, wall_time);
  out.string(kEventFileVersion, "brain.Event:2");
  return out.data();
}

std::string scalar_event(const std::string& tag, double value, int64_t step, double wall_time) {
  ProtobufWriter v;
  v.string(kValueTag, tag);
  v.float32(kValueSimpleValue, static_cast<float>(value));
  return event(v, step, wall_time);
}

std::string text_event(const std::string& tag, const std::string& text, int64_t step, double wall_time) {
  ProtobufWriter dim;
  dim.int64(kDimSize, 1);
  ProtobufWriter shape;
  shape.message(kShapeDim, dim);
  ProtobufWriter tensor;
  tensor.varint(kTensorDtype, kDtString);
  tensor.message(kTensorShape, shape);
  tensor.bytes(kTensorStringVal, text);
  ProtobufWriter v;
  v.string(kValueTag, tag + "/text_summary");
  v.message(kValueTensor, tensor);
  v.message(kValueMetadata, plugin_metadata("text", ""));  // TextPluginData version 0: no bytes
  return event(v, step, wall_time);
}

Histogram make_histogram(const std::string& tag, const std::vector<double>& values) {
  // torch's default bins: 0 and ±1e-12 * 1.1^k while below 1e20.
  static const std::vector<double> edges = [] {
    std::vector<double> positive;
    for (double v = 1e-12; v < 1e20; v *= 1.1) positive.push_back(v);
    std::vector<double> all;
    for (auto it = positive.rbegin(); it != positive.rend(); ++it) all.push_back(-*it);
    all.push_back(0);
    all.insert(all.end(), positive.begin(), positive.end());
    return all;
  }();
  Histogram h;
  std::vector<double> counts(edges.size() - 1, 0.0);
  bool any = false;
  for (double x : values) {
    if (!std::isfinite(x)) continue;
    if (!any) h.min = h.max = x;
    any = true;
    h.min = std::min(h.min, x);
    h.max = std::max(h.max, x);
    h.num += 1;
    h.sum += x;
    h.sum_squares += x * x;
    // numpy's rule: [edge_i, edge_i+1) except the last bin, which is closed;
    // values outside the edges are not counted.
    if (x < edges.front() || x > edges.back()) continue;
    size_t bin = std::upper_bound(edges.begin(), edges.end(), x) - edges.begin();
    bin = std::min(bin, edges.size() - 1) - 1;
    counts[bin] += 1;
  }
  ACCEL_CHECK_ARG(any, "the histogram \"", tag, "\" has no finite value to draw (", values.size(),
                  " values, none finite)");
  const auto first = std::find_if(counts.begin(), counts.end(), [](double c) { return c > 0; }) - counts.begin();
  const auto last = counts.rend() - std::find_if(counts.rbegin(), counts.rend(), [](double c) { return c > 0; });
  if (first >= last) {  // every value beyond ±1e20: one bucket spanning them
    h.bucket_limit = {h.min, h.max};
    h.bucket = {0, h.num};
    return h;
  }
  // The bucket before the first that holds values is empty and shows where
  // that one starts (TensorBoard keeps right edges only).
  h.bucket.push_back(first > 0 ? counts[first - 1] : 0);
  for (auto i = first; i < last; ++i) h.bucket.push_back(counts[i]);
  for (auto i = first; i <= last; ++i) h.bucket_limit.push_back(edges[i]);
  return h;
}

std::string histogram_event(const std::string& tag, const Histogram& histogram, int64_t step, double wall_time) {
  ProtobufWriter histo;
  histo.float64(kHistoMin, histogram.min);
  histo.float64(kHistoMax, histogram.max);
  histo.float64(kHistoNum, histogram.num);
  histo.float64(kHistoSum, histogram.sum);
  histo.float64(kHistoSumSquares, histogram.sum_squares);
  histo.packed_float64(kHistoBucketLimit, histogram.bucket_limit);
  histo.packed_float64(kHistoBucket, histogram.bucket);
  ProtobufWriter v;
  v.string(kValueTag, tag);
  v.message(kValueHisto, histo);
  return event(v, step, wall_time);
}

std::vector<std::string> hparams_events(const TrackerConfig& config, double wall_time) {
  ProtobufWriter experiment, session_start;
  for (const auto& [name, value] : config) {
    ProtobufWriter proto_value;
    const bool is_string = std::holds_alternative<std::string>(value);
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string>)
            proto_value.string(kProtoValueString, v);
          else
            proto_value.float64(kProtoValueNumber, static_cast<double>(v));
        },
        value);
    ProtobufWriter entry;
    entry.string(kMapKey, name);
    entry.message(kMapValue, proto_value);
    session_start.message(kSessionStartHparams, entry);
    ProtobufWriter info;
    info.string(kHparamInfoName, name);
    info.varint(kHparamInfoType, is_string ? kDataTypeString : kDataTypeFloat64);
    experiment.message(kExperimentHparamInfos, info);
  }
  session_start.float64(kSessionStartTime, wall_time);
  ProtobufWriter session_end;
  session_end.varint(kSessionEndStatus, kStatusSuccess);
  session_end.float64(kSessionEndTime, wall_time);
  return {hparams_event("_hparams_/experiment", kHparamsExperiment, experiment, wall_time),
          hparams_event("_hparams_/session_start_info", kHparamsSessionStart, session_start, wall_time),
          hparams_event("_hparams_/session_end_info", kHparamsSessionEnd, session_end, wall_time)};
}

}  // namespace accel::tensorboard
