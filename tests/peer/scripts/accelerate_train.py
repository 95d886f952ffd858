"""Trains the peer model with Accelerate 1.15 (run under `accelerate launch`
with 2 processes on CPU): DDP, AdamW, a linear warmup schedule, gradient
accumulation 2 and clipping. Reads the initial weights and the data from
IN (safetensors written by the C++ test); rank 0 writes the final weights to
OUT.safetensors and the learning rate after every optimizer step to
OUT.json."""
import json
import sys

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset
from transformers import get_linear_schedule_with_warmup


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(6, 16)
        self.fc2 = torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def main(src, out, batch, accumulation, warmup, total, clip, lr):
    tensors = load_file(src)
    net = Net()
    net.load_state_dict({k: v for k, v in tensors.items() if k.startswith("fc")})
    data = DataLoader(TensorDataset(tensors["x"], tensors["y"]), batch_size=batch, shuffle=False)
    # cpu=True: under `accelerate launch --multi_gpu` on a machine without a GPU
    # Accelerate would otherwise leave each process alone (no process group).
    acc = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    model, opt, data, sched = acc.prepare(net, opt, data, sched)
    lrs, norms = [], []
    for x, y in data:
        with acc.accumulate(model):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            acc.backward(loss)
            if acc.sync_gradients:
                norms.append(float(acc.clip_grad_norm_(model.parameters(), clip)))
            opt.step()
            sched.step()
            opt.zero_grad()
            if acc.sync_gradients:
                lrs.append(sched.get_last_lr()[0])
    if acc.is_main_process:
        final = {k: v.detach().contiguous() for k, v in acc.unwrap_model(model).state_dict().items()}
        save_file(final, out + ".safetensors")
        with open(out + ".json", "w") as f:
            json.dump({"lrs": lrs, "norms": norms, "num_processes": acc.num_processes}, f)
    acc.wait_for_everyone()


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]), float(a[6]), float(a[7]))
