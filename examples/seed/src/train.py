"""A small, real training script: linear regression by mini-batch gradient descent.

Reads every CSV file (header x1,...,xn,y) in --data-path, trains for --epochs with
--batch-size, prints the loss each epoch, and writes model.json to --model-dir.
Standard library only; uses numpy when it is installed.
"""

import argparse
import csv
import json
import os
import random
import sys


def load(folder):
    rows = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".csv"):
            continue
        with open(os.path.join(folder, name), newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            for r in reader:
                rows.append([float(v) for v in r])
    if not rows:
        sys.exit(f"no CSV rows found in {folder}")
    return header, rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-path", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--model-dir", default="outputs")
    args = p.parse_args()

    header, rows = load(args.data_path)
    features = len(header) - 1
    print(f"loaded {len(rows)} rows with {features} features from {args.data_path}")
    print(f"run id {os.environ.get('AZUREML_RUN_ID', '?')}, GPUs: {os.environ.get('CUDA_VISIBLE_DEVICES') or 'none'}")
    random.seed(0)
    w = [0.0] * features
    b = 0.0
    for epoch in range(1, args.epochs + 1):
        random.shuffle(rows)
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            gw = [0.0] * features
            gb = 0.0
            for r in batch:
                err = sum(wi * xi for wi, xi in zip(w, r[:-1])) + b - r[-1]
                for i in range(features):
                    gw[i] += err * r[i]
                gb += err
            n = len(batch)
            w = [wi - args.lr * g / n for wi, g in zip(w, gw)]
            b -= args.lr * gb / n
        loss = sum((sum(wi * xi for wi, xi in zip(w, r[:-1])) + b - r[-1]) ** 2 for r in rows) / len(rows)
        if epoch == 1 or epoch % 10 == 0 or epoch == args.epochs:
            print(f"epoch {epoch}/{args.epochs} loss {loss:.6f}")

    os.makedirs(args.model_dir, exist_ok=True)
    model = {"features": header[:-1], "weights": w, "bias": b, "loss": loss}
    with open(os.path.join(args.model_dir, "model.json"), "w") as f:
        json.dump(model, f, indent=2)
    print(f"wrote {os.path.join(args.model_dir, 'model.json')}")


if __name__ == "__main__":
    main()
