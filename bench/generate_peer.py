"""The Python side of bench/generate.sh: a GPT-2 checkpoint folder made once,
and transformers' GPT2LMHeadModel.generate on it, placed by Accelerate
(device_map="auto", with max_memory when given), as the C++ side's
`gpt2 generate` runs.

    python bench/generate_peer.py make DIR --n-layer 48 --n-embd 1600 --n-head 25 --dtype fp16
    python bench/generate_peer.py run DIR --prompt-tokens 1,2,3 --new 128 --device cuda:0 \
        --dtype fp16 [--max-memory 0:1GiB,cpu:100GiB] [--offload-dir DIR]

`run` prints the generated tokens of each sequence (comma-separated) and one
line like the C++ program's --timing:
    timing {"impl": "transformers", "tokens_per_s": ..., "ms_per_token": ..., ...}
tokens/s: new tokens over the wall time of one generate call (greedy,
use_cache=True, every sequence running to --new tokens), after --warmup
untimed calls.
"""
import argparse
import json
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make(args):
    config = GPT2Config(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, n_positions=1024,
                        vocab_size=50257)
    torch.manual_seed(0)
    # Initialised in the target dtype: half the memory and time of fp32.
    torch.set_default_dtype(DTYPES[args.dtype])
    model = GPT2LMHeadModel(config)
    model.save_pretrained(args.dir)
    print(f"made {args.dir}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters, {args.dtype}")


def max_memory_of(text):
    budgets = {}
    for item in text.split(","):
        device, size = item.rsplit(":", 1)
        budgets[int(device) if device.isdigit() else device] = size
    return budgets


def run(args):
    device = torch.device(args.device)
    kwargs = dict(dtype=DTYPES[args.dtype])
    if args.max_memory:
        kwargs.update(device_map="auto", max_memory=max_memory_of(args.max_memory))
        if args.offload_dir:
            kwargs.update(offload_folder=args.offload_dir)
    else:
        kwargs.update(device_map={"": args.device})
    model = GPT2LMHeadModel.from_pretrained(args.dir, **kwargs).eval()
    # No map when the whole model went to one device.
    placement = getattr(model, "hf_device_map", None) or {"": str(next(model.parameters()).device)}

    def block_device(i):
        # The map's entry for the block or its longest named ancestor ("" for all).
        name = f"transformer.h.{i}"
        while name not in placement and name:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return str(placement.get(name, ""))

    on_device = sum(1 for i in range(model.config.n_layer)
                    if block_device(i) in (str(device.index), str(device)))
    if args.max_memory:
        print(f"transformers: {on_device} of {model.config.n_layer} blocks on {device}, the rest offloaded; "
              f"device map {placement}", flush=True)
    # No end token: every sequence runs to --new tokens, as on the C++ side.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = torch.tensor([[int(t) for t in args.prompt_tokens.split(",")]] * args.batch, device=device)
    options = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, use_cache=True,
                   attention_mask=torch.ones_like(ids))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.no_grad():
        for _ in range(args.warmup):
            model.generate(ids, **options)
        sync()
        start = time.perf_counter()
        out = model.generate(ids, **options)
        sync()
        seconds = time.perf_counter() - start
    for row in out.tolist():
        print(",".join(str(t) for t in row))
    new = out.shape[0] * (out.shape[1] - ids.shape[1])
    line = {
        "impl": "transformers",
        "n_layer": model.config.n_layer,
        "n_embd": model.config.n_embd,
        "dtype": args.dtype,
        "device": str(device),
        "placement": f"max_memory {args.max_memory}" if args.max_memory else str(device),
        "blocks_on_device": on_device if args.max_memory else model.config.n_layer,
        "batch": ids.shape[0],
        "prompt": ids.shape[1],
        "new_tokens": new,
        "seconds": seconds,
        "tokens_per_s": new / seconds,
        "ms_per_token": seconds * 1e3 / (out.shape[1] - ids.shape[1]),
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0,
    }
    print("timing " + json.dumps(line), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--n-layer", type=int, default=48)
    m.add_argument("--n-embd", type=int, default=1600)
    m.add_argument("--n-head", type=int, default=25)
    m.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("--prompt-tokens", required=True)
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--new", type=int, default=128)
    r.add_argument("--device", default="cuda:0")
    r.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    r.add_argument("--max-memory", default="")
    r.add_argument("--offload-dir", default="")
    r.add_argument("--warmup", type=int, default=1)
    args = p.parse_args()
    {"make": make, "run": run}[args.command](args)


if __name__ == "__main__":
    main()
