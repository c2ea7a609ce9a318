"""python -m training {build-data,train,evaluate,export} ..."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training", description="Train and evaluate georeg's matchers.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-data", help="extract patch sets from ../shared/data")
    b.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    b.add_argument("--pair", choices=("opt-sar", "opt-ir"), required=True)
    b.add_argument("--out", default="training_data")
    t = sub.add_parser("train", help="train a matcher (resumes from OUT/RUN/last.pt)")
    t.add_argument("--model", choices=("kgl", "rrl"), required=True)
    t.add_argument("--pair", choices=("opt-sar", "opt-ir"), required=True)
    t.add_argument("--width", type=float, default=1.0)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--batch", type=int, default=128)
    t.add_argument("--warmup-steps", type=int, default=800)
    t.add_argument("--val-every", type=int, default=250)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data-dir", default="training_data")
    t.add_argument("--out-dir", default="training_runs")
    t.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    from georeg.runtime import tune_malloc

    tune_malloc()
    if args.cmd == "build-data":
        from .data import build

        paths = build(Path(args.data), args.pair, Path(args.out))
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        print((Path(args.out) / f"{args.pair}_info.json").read_text())
        return 0
    if args.cmd == "train":
        from .train import TrainConfig, train

        cfg = TrainConfig(model=args.model, pair=args.pair, width=args.width, steps=args.steps, batch=args.batch,
                          warmup_steps=args.warmup_steps, val_every=args.val_every, threads=args.threads,
                          seed=args.seed, data_dir=args.data_dir, out_dir=args.out_dir)
        best = train(cfg, resume=not args.no_resume, log=lambda m: print(m, flush=True))
        print(f"best checkpoint: {best}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
