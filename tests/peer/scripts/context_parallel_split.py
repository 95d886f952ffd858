"""torch's load-balanced sequence split for causal context parallel (the
_HeadTailLoadBalancer that torch's context_parallel applies by default), for
accel's split peer test (tests/peer/context_parallel_split_peer_test.cpp).

Usage: context_parallel_split.py CASES_JSON, a list of [length, world_size].
Prints after @@RESULT@@ one record per case: the global positions each rank
holds, rank by rank (torch's rearranging indices cut into world_size parts).
"""
import json
import sys

import torch
from torch.distributed.tensor.experimental._context_parallel._load_balancer import _HeadTailLoadBalancer


def one(length, world):
    indices = _HeadTailLoadBalancer(length, world, torch.device("cpu"))._generate_indices(restore=False)
    return [part.tolist() for part in indices.reshape(-1).chunk(world)]


cases = json.loads(sys.argv[1])
print("@@RESULT@@")
print(json.dumps([one(length, world) for length, world in cases]))
