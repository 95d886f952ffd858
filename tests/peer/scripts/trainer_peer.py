"""Transformers' Trainer on a small MLP, for accel's Trainer peer test
(tests/peer/trainer_peer_test.cpp) to reproduce.

Usage: trainer_peer.py WORK_DIR [ARGS_JSON], or under torchrun (every rank builds the
same model and data; rank 0 writes the files and the result).

Writes WORK_DIR/init.safetensors (the model's initial weights) and
WORK_DIR/data.safetensors (train_x, train_y, eval_x, eval_y), trains with
transformers.Trainer into WORK_DIR/py_out with the arguments below, and
writes the result to WORK_DIR/result.json (and prints it after
@@RESULT@@): {"log_history", "checkpoints" (folder names left),
"best_model_checkpoint" (folder name), "final" (final weights file),
"predict_metrics"}. compute_metrics (the mean absolute error, "mae") is on
for the whole run. After training, Trainer.predict on a test set of 11 rows
(test_x, test_y in data.safetensors): its predictions and label_ids go to
WORK_DIR/predict.safetensors, its metrics to "predict_metrics".
The C++ test trains accel's Trainer with the same arguments on the same files.
"""
import json
import os
import sys
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import Trainer, TrainingArguments

warnings.filterwarnings("ignore")

# The arguments both Trainers run with unless ARGS_JSON replaces them (the
# C++ test passes its own, the same it gives accel's TrainingArguments).
ARGS = dict(
    per_device_train_batch_size=4,
    per_device_eval_batch_size=4,
    gradient_accumulation_steps=2,
    num_train_epochs=3,
    learning_rate=3e-2,
    weight_decay=0.1,
    max_grad_norm=0.5,
    warmup_steps=3,
    lr_scheduler_type="linear",
    logging_steps=1,
    eval_strategy="steps",
    eval_steps=2,
    save_strategy="steps",
    save_steps=4,
    save_total_limit=2,
    load_best_model_at_end=True,
    seed=42,
    optim="adamw_torch",
)


class MLP(torch.nn.Module):
    # What include_num_input_tokens_seen counts.
    main_input_name = "x"

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.norm = torch.nn.LayerNorm(16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x, labels=None):
        out = self.fc2(torch.tanh(self.norm(self.fc1(x))))
        return {"loss": F.mse_loss(out, labels), "logits": out}


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def mean_absolute_error(prediction):
    return {"mae": float(abs(prediction.predictions - prediction.label_ids).mean())}


def main():
    work = sys.argv[1]
    main_process = int(os.environ.get("RANK", "0")) == 0
    torch.manual_seed(0)
    model = MLP()
    # A LayerNorm whose weights are not 1/0, so that (no) decay shows.
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.uniform_(-0.5, 0.5)
    w = torch.randn(8, 4)
    train_x = torch.randn(36, 8)
    eval_x = torch.randn(10, 8)
    data = {
        "train_x": train_x,
        "train_y": torch.sin(train_x @ w) + 0.3 * torch.randn(36, 4),
        "eval_x": eval_x,
        "eval_y": torch.sin(eval_x @ w) + 0.3 * torch.randn(10, 4),
    }
    # Drawn after the others, so that those stay what they were.
    data["test_x"] = torch.randn(11, 8)
    data["test_y"] = torch.sin(data["test_x"] @ w) + 0.3 * torch.randn(11, 4)
    if main_process:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(work, "init.safetensors"))
        save_file(data, os.path.join(work, "data.safetensors"))
    out = os.path.join(work, "py_out")
    run_args = json.loads(sys.argv[2]) if len(sys.argv) > 2 else ARGS
    args = TrainingArguments(output_dir=out, use_cpu=True, report_to="none", disable_tqdm=True, **run_args)
    trainer = Trainer(model=model, args=args, train_dataset=Rows(data["train_x"], data["train_y"]),
                      eval_dataset=Rows(data["eval_x"], data["eval_y"]), compute_metrics=mean_absolute_error)
    trainer.train()
    predicted = trainer.predict(Rows(data["test_x"], data["test_y"]))
    if not main_process:
        return
    final = os.path.join(work, "py_final.safetensors")
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, final)
    best = trainer.state.best_model_checkpoint
    save_file({"predictions": torch.from_numpy(predicted.predictions).contiguous(),
               "label_ids": torch.from_numpy(predicted.label_ids).contiguous()},
              os.path.join(work, "predict.safetensors"))
    result = {
        "log_history": trainer.state.log_history,
        "checkpoints": sorted(d for d in os.listdir(out) if d.startswith("checkpoint-")),
        "best_model_checkpoint": os.path.basename(best) if best else None,
        "final": final,
        "predict_metrics": predicted.metrics,
    }
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f)
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
    # Under torchrun, leave together and close the process group before the
    # interpreter exits: a rank that left while the other still wrote its
    # results made the other's Gloo group abort in its destructor at exit
    # ("terminate called without an active exception"), failing the run
    # after its results were out.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
