"""Prints Transformers' learning-rate schedules, as JSON, for accel's peer
test (tests/peer/scheduler_peer_test.cpp) to reproduce with
accel::get_scheduler.

An AdamW with two param groups (lr 1e-3 and 5e-4) and a default lr of 2e-3
(which polynomial decay takes as lr_init, through optimizer.defaults["lr"]).
For every scheduler type, built by transformers.get_scheduler, the lr of
each group after construction and after each of 50 scheduler steps.

Records: {"name", "warmup", "training", "kwargs": {...}, "lrs": [[g0, g1], ...]}
"""
import json
import warnings

import torch
from transformers import get_scheduler

warnings.filterwarnings("ignore")

STEPS = 50
CASES = [
    (name, 5, 40, {})
    for name in ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                 "constant_with_warmup", "inverse_sqrt"]
] + [
    # Schedule-specific arguments and edge cases, still one Python start.
    ("cosine", 5, 40, {"num_cycles": 1.5}),
    ("cosine_with_restarts", 5, 40, {"num_cycles": 3}),
    ("polynomial", 5, 40, {"lr_end": 1e-4, "power": 2.0}),
    ("inverse_sqrt", 5, 40, {"timescale": 17}),
    ("inverse_sqrt", 0, 40, {}),
    ("linear", 0, 40, {}),
    ("cosine", 10, 10, {}),
]

out = []
for name, warmup, training, kwargs in CASES:
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 5e-4}], lr=2e-3)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=training,
                          scheduler_specific_kwargs=kwargs or None)
    lrs = [[g["lr"] for g in opt.param_groups]]
    for _ in range(STEPS):
        opt.step()
        sched.step()
        lrs.append([float(g["lr"]) for g in opt.param_groups])
    out.append({"name": name, "warmup": warmup, "training": training, "kwargs": kwargs, "lrs": lrs})

print(json.dumps(out))
