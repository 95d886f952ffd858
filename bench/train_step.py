"""The Python twin of bench/train_step.cpp: the same model, batch, optimizer
and threads with Accelerate + PyTorch DDP (run under `accelerate launch`).

    accelerate launch --multi_gpu --num_processes 2 bench/train_step.py mlp 64 60 [adamw|fused]
"""
import os
import statistics
import sys
import time

import torch
from accelerate import Accelerator


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.nn.GELU
        self.net = torch.nn.Sequential(torch.nn.Linear(256, 1024), g(), torch.nn.Linear(1024, 1024), g(),
                                       torch.nn.Linear(1024, 1024), g(), torch.nn.Linear(1024, 10))

    def forward(self, x):
        return self.net(x)


class TinyTransformer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(1000, 256)
        layer = torch.nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, dropout=0.0)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(256, 10)

    def forward(self, tokens):
        h = self.embed(tokens).transpose(0, 1)
        return self.head(self.encoder(h).mean(0))


def main(which, batch, steps, optimizer):
    if "OMP_NUM_THREADS" in os.environ:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    # On a machine without a GPU, Accelerate forms the process group only with cpu=True.
    acc = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(0)
    if which == "mlp":
        net, x = Mlp(), torch.randn(batch, 256)
    else:
        net, x = TinyTransformer(), torch.randint(0, 1000, (batch, 64))
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=(optimizer == "fused") or None)
    model, opt = acc.prepare(net, opt)
    x, y = x.to(acc.device), y.to(acc.device)
    cuda = acc.device.type == "cuda"
    ms = []
    for s in range(steps + 10):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        acc.backward(loss)
        opt.step()
        opt.zero_grad()
        if cuda:
            torch.cuda.synchronize()
        loss.item()
        if s >= 10:
            ms.append((time.perf_counter() - t0) * 1000)
    if acc.is_main_process:
        print(f"accelerate {which} opt={optimizer} ranks={acc.num_processes} batch={batch} mp={acc.mixed_precision} "
              f"threads={torch.get_num_threads()} median_ms={statistics.median(ms):.3f} "
              f"mean_ms={statistics.fmean(ms):.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "adamw")
