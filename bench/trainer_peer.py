"""transformers' Trainer on the run bench_trainer times (bench/trainer.sh):
GPT2LMHeadModel from the same named configuration, random tokens, the
same batch and steps, AdamW (adamw_torch_fused on CUDA), weight decay 0.1,
clipping at 1.0, a linear schedule, bf16, torch_compile when asked.

    python bench/trainer_peer.py --config 124M --seq 1024 --batch 8 --steps 30 --timing-skip 10 [--bf16] [--compile [--compile-mode reduce-overhead]]

Prints one line like bench_trainer's: timing {"mode": "transformers", "step_ms": ..., ...}
"""
import argparse
import json
import tempfile
import time
import warnings

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

warnings.filterwarnings("ignore")

# examples/gpt2/config.cpp's named configurations.
CONFIGS = {
    "124M": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
    "350M": dict(n_layer=24, n_head=16, n_embd=1024, n_positions=1024, vocab_size=50257),
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=512),
}


class Rows(torch.utils.data.Dataset):
    def __init__(self, tokens):
        self.tokens = tokens

    def __len__(self):
        return self.tokens.shape[0]

    def __getitem__(self, i):
        # GPT2LMHeadModel shifts the labels itself: labels = input_ids.
        return {"input_ids": self.tokens[i], "labels": self.tokens[i]}


class StepClock(TrainerCallback):
    """When steps `skip` and `steps` end, after the device finished them."""

    def __init__(self, skip, steps):
        self.skip, self.steps, self.first, self.last = skip, steps, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.skip, self.steps):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if state.global_step == self.skip:
                self.first = time.perf_counter()
            else:
                self.last = time.perf_counter()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--timing-skip", type=int, default=2)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default=None,
                   help="TrainingArguments.torch_compile_mode (torch.compile's mode; unset: its default)")
    a = p.parse_args()
    if not 1 <= a.timing_skip < a.steps:
        p.error("--timing-skip must be in [1, --steps)")
    torch.manual_seed(0)
    shape = dict(CONFIGS[a.config])
    shape["n_positions"] = max(shape["n_positions"], a.seq)
    model = GPT2LMHeadModel(GPT2Config(**shape, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0))
    tokens = torch.randint(0, shape["vocab_size"], (a.steps * a.batch, a.seq))
    clock = StepClock(a.timing_skip, a.steps)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=a.batch, max_steps=a.steps, learning_rate=3e-4,
            weight_decay=0.1, save_strategy="no", logging_steps=a.steps, disable_tqdm=True, report_to="none",
            bf16=a.bf16, torch_compile=a.compile, torch_compile_mode=a.compile_mode,
            use_cpu=not torch.cuda.is_available(),
            optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch")
        Trainer(model=model, args=args, train_dataset=Rows(tokens), callbacks=[clock]).train()
    step_ms = (clock.last - clock.first) * 1000 / (a.steps - a.timing_skip)
    mode = "transformers" + (" + torch_compile" if a.compile else "") + (f" {a.compile_mode}" if a.compile_mode else "")
    line = {"mode": mode, "config": a.config, "seq": a.seq,
            "batch": a.batch, "timed_steps": a.steps - a.timing_skip, "step_ms": round(step_ms, 3),
            "tokens_per_s": round(1000 * a.batch * a.seq / step_ms, 1),
            "device": "cuda" if torch.cuda.is_available() else "cpu"}
    print("timing " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
