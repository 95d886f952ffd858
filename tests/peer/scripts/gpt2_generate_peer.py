"""Python side of the generation peer test (tests/peer/gpt2_generate_peer_test.cpp).

transformers' GPT2LMHeadModel.generate and its logits warpers on what the
C++ side wrote; tensors go through safetensors.

  generate DIR IN OUT N [SEED TEMPERATURE TOP_K TOP_P]
      loads DIR with from_pretrained; OUT gets the tokens generate makes from
      IN's input_ids with max_new_tokens N and use_cache=True: greedy, or with
      SEED sampled (torch.manual_seed(SEED) first, as the C++ side seeds its
      own generator), with the given warpers
  warpers IN OUT
      OUT gets, for IN's logits, the scores after TemperatureLogitsWarper,
      TopKLogitsWarper and TopPLogitsWarper in the combinations listed in
      COMBINATIONS (one tensor each, named by its index)
"""
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2LMHeadModel
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# (temperature, top_k, top_p); 1.0, 0 and 1.0 leave that warper out, as
# generate does. The C++ side lists the same.
COMBINATIONS = [
    (1.0, 5, 1.0),
    (1.0, 1, 1.0),
    (1.0, 0, 0.8),
    (1.0, 0, 0.05),
    (0.7, 10, 1.0),
    (1.3, 0, 0.9),
    (0.5, 20, 0.6),
    (2.0, 3, 0.99),
]


def generate(directory, ids_file, out, n, seed=None, temperature=None, top_k=None, top_p=None):
    model = GPT2LMHeadModel.from_pretrained(directory).eval()
    # No end token: every sequence runs to max_new_tokens, as on the C++ side.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    ids = load_file(ids_file)["input_ids"]
    kwargs = dict(max_new_tokens=int(n), use_cache=True, attention_mask=torch.ones_like(ids))
    if seed is None:
        kwargs.update(do_sample=False)
    else:
        torch.manual_seed(int(seed))
        kwargs.update(do_sample=True, temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
    with torch.no_grad():
        tokens = model.generate(ids, **kwargs)
    save_file({"tokens": tokens.contiguous()}, out)


def warpers(in_file, out):
    logits = load_file(in_file)["logits"]
    result = {}
    for i, (temperature, top_k, top_p) in enumerate(COMBINATIONS):
        chain = LogitsProcessorList()
        if temperature != 1.0:
            chain.append(TemperatureLogitsWarper(temperature))
        if top_k != 0:
            chain.append(TopKLogitsWarper(top_k=top_k))
        if top_p < 1.0:
            chain.append(TopPLogitsWarper(top_p=top_p))
        result[str(i)] = chain(None, logits.clone()).contiguous()
    save_file(result, out)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"generate": generate, "warpers": warpers}[command](*args)
