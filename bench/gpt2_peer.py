"""The Python twin of examples/gpt2 for bench/gpt2.sh: transformers'
GPT2LMHeadModel trained with Accelerate (run it under `accelerate launch
--mixed_precision bf16`), the same step as the C++ program: random tokens,
logits, cross-entropy, backward, clip to 1.0, AdamW (decay on matrices only,
betas 0.9/0.95), cosine schedule with warmup, zero_grad, loss.item().

    accelerate launch --mixed_precision bf16 bench/gpt2_peer.py --config 124M --batch 8 --steps 30 \
        [--compile | --compile-step MODE] [--fused]

--compile wraps the model alone in torch.compile: the cross-entropy then
runs eagerly on full float32 logits (Accelerate's autocast wrapper returns
them in float32). --compile-step MODE wraps model + loss as one function,
the strongest form a Python user writes, so inductor fuses the loss with
the output layer's epilogue; MODE is torch.compile's mode ("default",
"max-autotune-no-cudagraphs", "reduce-overhead"). The optimizer, clipping
and schedule stay outside, the same loop as every other row; compilation
(minutes for max-autotune) happens in the warm-up steps, left out of the
timing.

Prints, like the C++ program's --timing, one line:
    timing {"impl": "accelerate", "tokens_per_s": ..., "step_ms": ..., "peak_mem_mb": ..., ...}
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import GPT2Config, GPT2LMHeadModel, get_cosine_schedule_with_warmup

# The shapes of examples/gpt2/config.cpp's named configurations.
CONFIGS = {
    "124M": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257),
    "350M": dict(n_layer=24, n_head=16, n_embd=1024, n_positions=1024, vocab_size=50257),
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=512),
}
COMPILE_MODES = ["default", "max-autotune-no-cudagraphs", "reduce-overhead"]


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="124M", choices=sorted(CONFIGS))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--timing-skip", type=int, default=3, help="warm-up steps left out of the timing")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--compile-step", metavar="MODE", choices=COMPILE_MODES,
                   help="torch.compile model + loss as one function with this mode")
    p.add_argument("--fused", action="store_true", help="AdamW(fused=True)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after the timed steps, profile N more and print the kernels by GPU time")
    args = p.parse_args()
    if args.compile and args.compile_step:
        p.error("--compile and --compile-step exclude each other: the second compiles the model as well")
    if args.timing_skip >= args.steps:
        p.error(f"--timing-skip {args.timing_skip} leaves no timed step out of --steps {args.steps}")
    return args


def main():
    args = parse()
    # On a machine without a GPU, Accelerate uses the CPU only when told.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(args.seed)
    shape = CONFIGS[args.config]
    config = GPT2Config(**shape, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None)
    net = GPT2LMHeadModel(config)
    if args.compile:
        net = torch.compile(net)
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=args.fused or None)
    n = acc.num_processes
    sched = get_cosine_schedule_with_warmup(opt, args.steps // 10 * n, args.steps * n)
    model, opt, sched = acc.prepare(net, opt, sched)

    def forward_loss(inputs, targets):
        logits = model(inputs).logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))

    if args.compile_step:
        # The prepared model (Accelerate's autocast wrapper included) is
        # traced together with the loss.
        forward_loss = torch.compile(forward_loss, mode=args.compile_step)

    gen = torch.Generator().manual_seed(args.seed + acc.process_index)
    vocab = shape["vocab_size"]
    tokens_per_step = args.batch * args.seq * acc.gradient_accumulation_steps * n
    cuda = acc.device.type == "cuda"
    timed_ms = 0.0
    def train_step():
        for _ in range(acc.gradient_accumulation_steps):
            with acc.accumulate(model):
                window = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=gen).to(acc.device)
                inputs, targets = window[:, :-1], window[:, 1:]
                loss = forward_loss(inputs, targets)
                acc.backward(loss)
                if acc.sync_gradients and args.clip > 0:
                    acc.clip_grad_norm_(model.parameters(), args.clip)
                opt.step()
                sched.step()
                opt.zero_grad()
        return loss.item()

    for step in range(args.steps):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss_value = train_step()
        if cuda:
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1e3
        if step >= args.timing_skip:
            timed_ms += ms
        acc.print(f"step {step + 1}/{args.steps}  loss {loss_value:.4f}  {ms:.1f} ms  {tokens_per_step / ms * 1e3:.0f} tokens/s")

    timed = args.steps - args.timing_skip
    step_ms = timed_ms / timed
    impl = ("accelerate" + ("+compile" if args.compile else "")
            + (f"+compile_step:{args.compile_step}" if args.compile_step else "") + ("+fused" if args.fused else ""))
    line = {
        "impl": impl, "optimizer": "fused" if args.fused else "adamw", "config": args.config,
        "batch": args.batch, "seq": args.seq, "processes": n, "mixed_precision": acc.mixed_precision,
        "timed_steps": timed, "tokens_per_s": tokens_per_step / step_ms * 1e3, "step_ms": step_ms,
        "peak_mem_mb": torch.cuda.max_memory_allocated(acc.device) / 2**20 if cuda else 0.0,
    }
    if acc.is_main_process:
        print("timing " + json.dumps(line), flush=True)
    if args.profile > 0:
        activities = [torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.profile):
                train_step()
            if cuda:
                torch.cuda.synchronize()
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        acc.print(f"profile of {args.profile} steps:")
        acc.print(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=90))


if __name__ == "__main__":
    main()
