"""Prints Accelerate's own sharding over a grid, as JSON, for accel's peer
test (tests/peer/data_peer_test.cpp) to compare with.

Records:
  {"kind": "batch", n, bs, P, p, split, even, drop, "batches": [[...]], "len": L}
  {"kind": "iter", n, bs, P, p, split, drop, "samples": [...]}
  {"kind": "perm", n, seed, epoch, "perm": [...]}
"""
import json

import torch
from torch.utils.data import BatchSampler, IterableDataset, SequentialSampler

from accelerate.data_loader import BatchSamplerShard, IterableDatasetShard, SeedableRandomSampler


class Counting(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))


def sizes(bs, P):
    return sorted({0, 1, max(P - 1, 0), bs * P, bs * P + 1, 2 * bs * P - 1, 2 * bs * P + 1, 22, 23})


out = []
for P in range(1, 5):
    for bs in range(1, 5):
        for n in sizes(bs, P):
            for split in (False, True):
                for drop in (False, True):
                    if split and bs % P != 0:
                        continue
                    for even in (False, True):
                        for p in range(P):
                            inner = BatchSampler(SequentialSampler(range(n)), bs, drop)
                            s = BatchSamplerShard(inner, P, p, split_batches=split, even_batches=even)
                            out.append(dict(kind="batch", n=n, bs=bs, P=P, p=p, split=split, even=even,
                                            drop=drop, batches=[list(b) for b in s], len=len(s)))
                    for p in range(P):
                        s = IterableDatasetShard(Counting(n), batch_size=bs, drop_last=drop, num_processes=P,
                                                 process_index=p, split_batches=split)
                        out.append(dict(kind="iter", n=n, bs=bs, P=P, p=p, split=split, drop=drop,
                                        samples=list(s)))

for n in (1, 2, 5, 10, 17, 100, 1000):
    for seed in (0, 1, 42, 2**31 - 1, 2**40 + 3):
        for epoch in (0, 1, 5):
            s = SeedableRandomSampler(range(n), data_seed=seed)
            s.set_epoch(epoch)
            out.append(dict(kind="perm", n=n, seed=seed, epoch=epoch, perm=list(s)))

print(json.dumps(out))
