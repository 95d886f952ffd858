"""Python side of the estimate-memory peer test (tests/peer/estimate_memory_peer_test.cpp).

`accelerate estimate-memory` takes only Hub model names: it asks the Hub for
the model's metadata (huggingface_hub.model_info) before building the model
from its config. The tests run offline on local folders, so this script
stands in for that one Hub call (a local folder's metadata: library
transformers, no auto_map) and runs the rest of the command as it is:
AutoConfig.from_pretrained(DIR), AutoModel.from_config on the meta device,
calculate_maximum_sizes, the per-dtype rule, convert_bytes and the table.

  estimate DTYPES DIR...  for each DIR (DTYPES comma-separated) prints, after
                          @@RESULT@@, {DIR: {"table": what the command prints,
                          "rows": the numbers behind it, "largest_layer_names"}}
  save DIR SHARD          saves the GPT2LMHeadModel of DIR/config.json in float16
                          with save_pretrained (sharded past SHARD, e.g. 50KB) and
                          prints the largest layer names Accelerate finds in that model
"""
import argparse
import contextlib
import io
import json
import sys
import types

import torch
from accelerate import init_empty_weights
from accelerate.commands import estimate
from accelerate.utils import calculate_maximum_sizes
from transformers import AutoConfig, GPT2LMHeadModel


def local_model_info(repo, token=None):
    # What model_info would say of a transformers model without remote code.
    return types.SimpleNamespace(config={}, library_name="transformers")


def command_args(model, dtypes):
    return argparse.Namespace(model_name=model, library_name="transformers", dtypes=dtypes, trust_remote_code=False)


def cmd_estimate(model, dtypes):
    estimate.verify_on_hub = local_model_info
    args = command_args(model, dtypes)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        estimate.estimate_command(args)
    # The command announces the config it loads, then prints the table.
    lines = printed.getvalue().splitlines(keepends=True)
    table = "".join(line for line in lines if not line.startswith("Loading pretrained config"))
    with contextlib.redirect_stdout(io.StringIO()):
        rows = estimate.gather_data(command_args(model, dtypes))
        empty = estimate.create_empty_model(model, library_name="transformers")
    _, (_, names) = calculate_maximum_sizes(empty)
    return {
        "table": table,
        "rows": [
            {
                "dtype": dtype,
                "largest_layer": largest,
                "total_size": total,
                "training_using_adam": None if max(training.values()) == -1 else max(training.values()),
            }
            for dtype, largest, total, training in rows
        ],
        "largest_layer_names": names,
        "model_class": type(empty).__name__,
    }


def cmd_save(directory, shard):
    config = AutoConfig.from_pretrained(directory)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).to(torch.float16).save_pretrained(directory, max_shard_size=shard)
    with init_empty_weights():
        empty = GPT2LMHeadModel(config)
    _, (_, names) = calculate_maximum_sizes(empty)
    return {"largest_layer_names": names}


def main():
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "estimate":
        result = {model: cmd_estimate(model, rest[0].split(",")) for model in rest[1:]}
    elif command == "save":
        result = cmd_save(rest[0], rest[1])
    else:
        raise SystemExit(f"unknown command {command!r}")
    print("@@RESULT@@" + json.dumps(result))


if __name__ == "__main__":
    main()
