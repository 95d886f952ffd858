#pragma once
// Transformers' LabelSmoother: the cross-entropy of `logits` against class
// indices `labels` with label smoothing `epsilon`,
//
//   (1 - epsilon) * NLL + epsilon * mean over classes of -log p,
//
// both averaged over the labels that are not `ignore_index` (-100). With
// `shift_labels` (a causal LM), position i's logits are compared with label
// i + 1. The Trainer uses it in place of the model's loss when
// label_smoothing_factor is set.
//
//   auto loss = accel::label_smoothed_loss(logits, labels, 0.1);
#include <cstdint>

#include <torch/torch.h>

#include "accel/util/export.h"

namespace accel {

/// `logits` [..., classes]; `labels` of the leading shape (integers).
/// The -log p sum runs in float32 at least (as Transformers' does for
/// half-precision logits).
ACCEL_API torch::Tensor label_smoothed_loss(const torch::Tensor& logits, const torch::Tensor& labels, double epsilon,
                                            bool shift_labels = false, int64_t ignore_index = -100);

}  // namespace accel
