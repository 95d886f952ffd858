"""Start-up probe for the launcher benchmark (bench/startup.sh): builds an
Accelerator, all-reduces one tensor, waits for everyone."""
import sys

import torch
from accelerate import Accelerator

acc = Accelerator(cpu=len(sys.argv) > 1 and sys.argv[1] == "cpu")
total = acc.reduce(torch.ones(1, device=acc.device), reduction="sum")
acc.wait_for_everyone()
assert int(total.item()) == acc.num_processes
