"""One SetFit cell for benchmarks/fewshot.py, run as a child process in the interpreter that has ``setfit``.

    python setfit_worker.py IN.json OUT.json

IN.json: ``{"model": path, "train_texts": [...], "train_labels": [...], "tests": {name: [texts]}, "seed": int,
"threads": int, "num_iterations": int, "batch_size": int, "max_length": int}``. OUT.json: the predicted labels
of every test set and the CPU seconds (``time.process_time`` of this process, all threads) of training and of
prediction. Imports nothing from transferkit: the parent hands over the exact texts and labels it trains its own
side on. Settings: SetFit 1.2.0's defaults (body lr 2e-5, one epoch of pairs, logistic-regression head) with
``num_iterations`` pair draws per example, as in the SetFit paper; texts truncated to ``max_length`` tokens (the
parent's: transferkit's side truncates at the same length; the model folder's own default is 256).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import json
import sys
import time


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as fh:
        job = json.load(fh)
    import torch

    torch.set_num_threads(int(job["threads"]))
    import setfit
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(job["model"], local_files_only=True)
    model.model_body.max_seq_length = int(job["max_length"])
    args = TrainingArguments(batch_size=int(job["batch_size"]), num_iterations=int(job["num_iterations"]),
                             num_epochs=1, seed=int(job["seed"]), max_length=int(job["max_length"]), report_to="none",
                             save_strategy="no",
                             output_dir=os.path.join(os.path.dirname(os.path.abspath(dst)), "setfit-out"))
    train = Dataset.from_dict({"text": job["train_texts"], "label": job["train_labels"]})
    trainer = Trainer(model=model, args=args, train_dataset=train)
    c0, w0 = time.process_time(), time.perf_counter()
    trainer.train()
    c1, w1 = time.process_time(), time.perf_counter()
    preds = {name: [int(p) for p in model.predict(texts, batch_size=64, as_numpy=True)]
             for name, texts in job["tests"].items()}
    c2 = time.process_time()
    out = {"predictions": preds, "train_cpu_seconds": c1 - c0, "train_wall_seconds": w1 - w0,
           "predict_cpu_seconds": c2 - c1, "setfit": setfit.__version__, "torch": torch.__version__,
           "threads": torch.get_num_threads(), "max_length": model.model_body.max_seq_length}
    with open(dst, "w", encoding="utf-8") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
