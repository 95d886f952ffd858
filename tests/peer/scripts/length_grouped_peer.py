"""Transformers' get_length_grouped_indices and LengthGroupedSampler on
fixed lengths, for accel's LengthGroupedSampler peer test
(tests/peer/length_grouped_peer_test.cpp).

Usage: length_grouped_peer.py. Prints after @@RESULT@@ a list of cases:
{"lengths", "batch_size", "seed", "mega_batch_mult" (null: the default),
"indices": get_length_grouped_indices with a CPU generator seeded with
seed, "sampler": list(LengthGroupedSampler(batch_size, lengths=...,
generator=that generator)), "randperm": torch.randperm(n) from it}.
"""
import json
import random
import sys

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


def main():
    rng = random.Random(7)
    cases = []
    # (n, batch_size, max length, mega_batch_mult): tiny sets (mult 1), the
    # 4-megabatch default, the cap of 50, an explicit mult, many ties.
    for n, batch, top, mult in [
        (7, 4, 30, None),
        (100, 4, 50, None),
        (1000, 2, 400, None),
        (257, 3, 5, None),
        (60, 2, 1000, 3),
        (1, 1, 9, None),
    ]:
        lengths = [rng.randint(1, top) for _ in range(n)]
        for seed in (0, 42, 1234567):
            g = torch.Generator().manual_seed(seed)
            indices = get_length_grouped_indices(lengths, batch, mega_batch_mult=mult, generator=g)
            sampler = None
            if mult is None:
                sampler = list(LengthGroupedSampler(batch, lengths=lengths, generator=torch.Generator().manual_seed(seed)))
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
            cases.append(
                {
                    "lengths": lengths,
                    "batch_size": batch,
                    "seed": seed,
                    "mega_batch_mult": mult,
                    "indices": indices,
                    "sampler": sampler,
                    "randperm": perm,
                }
            )
    sys.stdout.write("\n@@RESULT@@" + json.dumps(cases) + "\n")


if __name__ == "__main__":
    main()
