"""The peer of bench/fsdp_offload.sh: transformers' GPT2LMHeadModel trained
with Accelerate + FSDP2 and CPUOffloadPolicy on one GPU, as a skilled user
sets it up for the largest model: fully_shard per GPT2Block
(TRANSFORMER_BASED_WRAP), bf16 parameters for compute with fp32 gradient
reduction (MixedPrecisionPolicy), parameters, gradients and optimizer state
in pinned host memory, torch's fused AdamW stepping them on the CPU. The
same step as examples/gpt2: random tokens, logits, cross-entropy, backward,
clip to 1.0, AdamW (decay on matrices only, betas 0.9/0.95), zero_grad,
loss.item().

    accelerate launch --use_fsdp --num_processes 1 bench/fsdp_offload_peer.py --n-layer 32 --n-embd 4096 --n-head 32

Prints one line: timing {"impl": "accelerate+fsdp2+cpu_offload", "tokens_per_s": ..., "host_rss_gb": ...}
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from accelerate import Accelerator, FullyShardedDataParallelPlugin
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy
from transformers import GPT2Config, GPT2LMHeadModel


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--n-layer", type=int, default=48)
    p.add_argument("--n-embd", type=int, default=1600)
    p.add_argument("--n-head", type=int, default=25)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--timing-skip", type=int, default=3)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1337)
    args = p.parse_args()
    if args.timing_skip >= args.steps:
        p.error(f"--timing-skip {args.timing_skip} leaves no timed step out of --steps {args.steps}")
    return args


def main():
    args = parse()
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        reshard_after_forward=True,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["GPT2Block"],
        mixed_precision_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32),
        cpu_offload=CPUOffloadPolicy(pin_memory=True),
        state_dict_type="SHARDED_STATE_DICT",
    )
    acc = Accelerator(fsdp_plugin=plugin)
    torch.manual_seed(args.seed)
    config = GPT2Config(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, n_positions=1024,
                        vocab_size=50257, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None)
    net = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in net.parameters())
    decay = [p for p in net.parameters() if p.dim() >= 2]
    no_decay = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    model, opt = acc.prepare(net, opt)

    gen = torch.Generator().manual_seed(args.seed)
    tokens_per_step = args.batch * args.seq
    timed_ms = 0.0
    for step in range(args.steps):
        torch.cuda.synchronize()
        start = time.perf_counter()
        window = torch.randint(0, config.vocab_size, (args.batch, args.seq + 1), generator=gen).to(acc.device)
        inputs, targets = window[:, :-1], window[:, 1:]
        logits = model(inputs).logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))
        acc.backward(loss)
        if args.clip > 0:
            acc.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad()
        loss_value = loss.item()
        torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1e3
        if step >= args.timing_skip:
            timed_ms += ms
        acc.print(f"step {step + 1}/{args.steps}  loss {loss_value:.4f}  {ms:.1f} ms  "
                  f"{tokens_per_step / ms * 1e3:.0f} tokens/s")

    step_ms = timed_ms / (args.steps - args.timing_skip)
    line = {
        "impl": "accelerate+fsdp2+cpu_offload", "params": params, "batch": args.batch, "seq": args.seq,
        "timed_steps": args.steps - args.timing_skip, "tokens_per_s": tokens_per_step / step_ms * 1e3,
        "step_ms": step_ms, "peak_mem_mb": torch.cuda.max_memory_allocated(acc.device) / 2**20,
        "host_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if acc.is_main_process:
        print("timing " + json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
