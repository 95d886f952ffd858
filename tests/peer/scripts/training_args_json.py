"""The JSON Transformers' TrainingArguments.to_json_string() writes with the
arguments accel's Trainer took on last (group_by_length, NEFTune,
auto_find_batch_size, torch_compile), for accel's peer test
(tests/peer/training_args_json_peer_test.cpp).

Usage: training_args_json.py OUTPUT_DIR. Prints after @@RESULT@@ an object:
"changed", the entries of that JSON that differ from the JSON of default
arguments, and "whole", the whole JSON (accelerator_config spelled out as a
dict, hub_token as its placeholder), which accel loads as it is.
"""
import json
import sys

from transformers import TrainingArguments


def main():
    args = TrainingArguments(
        output_dir=sys.argv[1],
        train_sampling_strategy="group_by_length",
        length_column_name="n_tokens",
        neftune_noise_alpha=5.0,
        auto_find_batch_size=True,
        torch_compile=True,
        accelerator_config={"split_batches": True, "even_batches": False},
        use_cpu=True,
        report_to="none",
    )
    written = json.loads(args.to_json_string())
    default = json.loads(TrainingArguments(output_dir=sys.argv[1], use_cpu=True, report_to="none").to_json_string())
    changed = {k: v for k, v in written.items() if default.get(k) != v}
    sys.stdout.write("\n@@RESULT@@" + json.dumps({"changed": changed, "whole": written}) + "\n")


if __name__ == "__main__":
    main()
