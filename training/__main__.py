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
    b.add_argument("--align", choices=("none", "translation", "affine", "local"), default="none",
                   help="opt-sar: first remove the Sentinel-1/2 pairs' residual misalignment with this model")
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
    t.add_argument("--near-fraction", type=float, default=0.25,
                   help="share of the batch given an 8-14 px near negative (0: the spec's training)")
    t.add_argument("--shift-frac", type=float, default=0.025,
                   help="per-modality random translation as a fraction of the patch (spec: 0.05)")
    t.add_argument("--decay-from", type=int, default=-1,
                   help="from this step, decay the learning rates along a half cosine to --decay-floor x "
                        "at --steps (default -1: constant rates, as the spec)")
    t.add_argument("--decay-floor", type=float, default=0.05)
    t.add_argument("--no-resume", action="store_true")
    e = sub.add_parser("evaluate", help="FPR95 table: learned matchers, baseline, NCC and SIFT on one split")
    e.add_argument("--pair", choices=("opt-sar", "opt-ir"), required=True)
    e.add_argument("--split", choices=("val", "test"), default="test")
    e.add_argument("--data-dir", default="training_data")
    e.add_argument("--weights", nargs="*", default=None,
                   help="shipped matcher names to include (default: those shipped for this pair)")
    e.add_argument("--checkpoint", nargs="*", default=[], help="LABEL=PATH training checkpoints to include")
    e.add_argument("--max-pairs", type=int, default=0)
    e.add_argument("--json", help="write the numbers here too")
    x = sub.add_parser("export", help="ship a checkpoint as georeg weights with its manifest")
    x.add_argument("checkpoint")
    x.add_argument("--name", required=True, help="e.g. kgl-opt-sar")
    x.add_argument("--data-dir", default="training_data")
    x.add_argument("--command", default="", help="the command that reproduces the checkpoint")
    x.add_argument("--no-fusion", action="store_true",
                   help="ship the network alone, without the structural-score fusion fitted on validation")
    x.add_argument("--weights-dir", default=None,
                   help="write here instead of georeg/weights (to compare a re-made file with the shipped one)")
    c = sub.add_parser("compare", help="shipped weights against ones re-made from the manifest's command")
    c.add_argument("name", help="e.g. rrl-opt-ir")
    c.add_argument("--weights-dir", required=True, help="where the re-made weights were exported")
    c.add_argument("--json", help="write the comparison here too")
    args = ap.parse_args(argv)
    from georeg.runtime import tune_malloc

    tune_malloc()
    if args.cmd == "build-data":
        from .data import build

        paths = build(Path(args.data), args.pair, Path(args.out), align=args.align)
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        print((Path(args.out) / f"{args.pair}_info.json").read_text())
        return 0
    if args.cmd == "train":
        from .train import TrainConfig, train

        cfg = TrainConfig(model=args.model, pair=args.pair, width=args.width, steps=args.steps, batch=args.batch,
                          warmup_steps=args.warmup_steps, val_every=args.val_every, threads=args.threads,
                          seed=args.seed, data_dir=args.data_dir, out_dir=args.out_dir,
                          near_fraction=args.near_fraction, shift_frac=args.shift_frac,
                          decay_from=args.decay_from, decay_floor=args.decay_floor)
        best = train(cfg, resume=not args.no_resume, log=lambda m: print(m, flush=True))
        print(f"best checkpoint: {best}")
        return 0
    if args.cmd == "evaluate":
        from georeg.matchers import available, load

        from .benchmark import checkpoint_matcher, evaluate, save, table

        names = args.weights if args.weights is not None else [n for n, m in available().items()
                                                               if m.get("pair") == args.pair]
        ms = {n: load(n, "cpu") for n in names}
        for item in args.checkpoint:
            label, path = item.split("=", 1)
            ms[label] = checkpoint_matcher(Path(path))
        res = evaluate(Path(args.data_dir), args.pair, args.split, ms, args.max_pairs)
        print(table(res))
        if args.json:
            save(res, Path(args.json))
        return 0
    if args.cmd == "export":
        from .export import export_checkpoint

        path = export_checkpoint(Path(args.checkpoint), args.name, Path(args.data_dir), args.command,
                                 fusion=not args.no_fusion,
                                 directory=Path(args.weights_dir) if args.weights_dir else None)
        print(f"wrote {path} and {path.with_suffix('.json')}")
        return 0
    if args.cmd == "compare":
        from .reproduce import compare, table

        try:
            res = compare(args.name, Path(args.weights_dir))
        except LookupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(table(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
