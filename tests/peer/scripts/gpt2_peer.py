"""Python side of the GPT-2 peer test (tests/peer/gpt2_peer_test.cpp).

transformers' GPT2LMHeadModel writes checkpoints the C++ example loads, and
loads the ones it saves; logits of a fixed input go through safetensors.

  make DIR OUT [SHARD]   a small random GPT2LMHeadModel saved with save_pretrained
                         (sharded when SHARD, e.g. 100KB, is given); OUT gets
                         input_ids and their fp32 logits
  legacy DIR OUT         the same model laid out as old checkpoints and the hub's
                         openai-community/gpt2 are: names without "transformer.",
                         the causal-mask buffers attn.bias / attn.masked_bias, and
                         an lm_head.weight equal to the embedding
  logits DIR IDS OUT     loads DIR with from_pretrained; OUT gets the logits of
                         IDS's input_ids
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

SHAPE = dict(n_layer=2, n_head=4, n_embd=64, n_positions=128, vocab_size=500)


def small_model():
    torch.manual_seed(0)
    config = GPT2Config(**SHAPE, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(config).eval()
    # Give the zero-initialised biases and the unit LayerNorms random values
    # too, so that a bias or gain loaded into the wrong place shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def input_ids():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, SHAPE["vocab_size"], (2, 40), generator=g)


def logits_of(model, ids):
    with torch.no_grad():
        return model(ids).logits.float().contiguous()


def make(directory, out, shard=None):
    model = small_model()
    if shard:
        model.save_pretrained(directory, max_shard_size=shard)
    else:
        model.save_pretrained(directory)
    ids = input_ids()
    save_file({"input_ids": ids, "logits": logits_of(model, ids)}, out)


def legacy(directory, out):
    model = small_model()
    os.makedirs(directory, exist_ok=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if name.startswith("transformer."):
            tensors[name[len("transformer."):]] = t.clone().contiguous()
    p = SHAPE["n_positions"]
    for i in range(SHAPE["n_layer"]):
        tensors[f"h.{i}.attn.bias"] = torch.tril(torch.ones(p, p, dtype=torch.uint8)).view(1, 1, p, p)
        tensors[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    tensors["lm_head.weight"] = tensors["wte.weight"].clone()
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(model.config.to_dict(), f)
    ids = input_ids()
    save_file({"input_ids": ids, "logits": logits_of(model, ids)}, out)


def logits(directory, ids_file, out):
    model = GPT2LMHeadModel.from_pretrained(directory).eval()
    ids = load_file(ids_file)["input_ids"]
    save_file({"logits": logits_of(model, ids)}, out)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"make": make, "legacy": legacy, "logits": logits}[command](*args)
