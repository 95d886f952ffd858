"""Transformers' LabelSmoother on fixed logits and labels, for accel's
label_smoothed_loss peer test (tests/peer/label_smoother_peer_test.cpp).

Usage: label_smoother_peer.py WORK_DIR. Writes WORK_DIR/inputs.safetensors
(logits [3, 6, 11] float32, labels [3, 6] int64 with some -100) and prints
after @@RESULT@@ the smoothed losses for epsilon 0.1 and 0.3, with and
without shift_labels: {"eps_<e>_shift_<0|1>": loss}.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers.trainer_pt_utils import LabelSmoother


def main():
    work = sys.argv[1]
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11) * 2
    labels = torch.randint(0, 11, (3, 6))
    labels[0, 4:] = -100
    labels[2, 1] = -100
    save_file({"logits": logits, "labels": labels}, os.path.join(work, "inputs.safetensors"))
    result = {}
    for eps in (0.1, 0.3):
        for shift in (False, True):
            loss = LabelSmoother(epsilon=eps)({"logits": logits}, labels, shift_labels=shift)
            result[f"eps_{eps}_shift_{int(shift)}"] = loss.item()
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
