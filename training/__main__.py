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
    b.add_argument("--hold-out", default="",
                   help="comma-separated 3MOS sensors (ALOS, GF3, RCM, Redarsat, SEN) to keep out of "
                        "train/val/test; each is written as split holdout-SENSOR for `evaluate --split`")
    t = sub.add_parser("train", help="train a matcher (resumes from OUT/RUN/last.pt)")
    from .train import add_arguments

    add_arguments(t)
    t.add_argument("--no-resume", action="store_true")
    e = sub.add_parser("evaluate", help="FPR95 table: learned matchers, baseline, NCC and SIFT on one split")
    e.add_argument("--pair", choices=("opt-sar", "opt-ir"), required=True)
    e.add_argument("--split", default="test",
                   help="val, test, or holdout-SENSOR (written by build-data --hold-out)")
    e.add_argument("--data-dir", default="training_data")
    e.add_argument("--weights", nargs="*", default=None,
                   help="shipped matcher names to include (default: those shipped for this pair)")
    e.add_argument("--checkpoint", nargs="*", default=[], help="LABEL=PATH training checkpoints to include")
    e.add_argument("--exported", nargs="*", default=[],
                   help="LABEL=MANIFEST weights exported elsewhere (export --weights-dir), by their manifest's path")
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
        from georeg.errors import ConfigError

        from .data import build

        try:
            paths = build(Path(args.data), args.pair, Path(args.out), align=args.align,
                          hold_out=tuple(s for s in args.hold_out.split(",") if s))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        print((Path(args.out) / f"{args.pair}_info.json").read_text())
        return 0
    if args.cmd == "train":
        from georeg.errors import ConfigError

        from .train import config_from_args, train

        try:
            cfg = config_from_args(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        best = train(cfg, resume=not args.no_resume, log=lambda m: print(m, flush=True))
        print(f"best checkpoint: {best}")
        return 0
    if args.cmd == "evaluate":
        from georeg.matchers import available, load

        from .benchmark import checkpoint_matcher, evaluate, exported_matcher, save, table

        split_file = Path(args.data_dir) / f"{args.pair}_{args.split}.npz"
        if not split_file.exists():
            print(f"error: no patch set {split_file}; make it with `python -m training build-data --pair {args.pair}"
                  f" --out {args.data_dir}` (holdout-SENSOR splits need --hold-out SENSOR)", file=sys.stderr)
            return 2
        extra = []  # (label, path, loader) of --checkpoint and --exported
        for opt, items, loader in (("--checkpoint", args.checkpoint, checkpoint_matcher),
                                   ("--exported", args.exported, exported_matcher)):
            for item in items:
                label, _, path = item.partition("=")
                if not label or not Path(path).is_file():
                    print(f"error: {opt} takes LABEL=PATH to an existing file; got {item!r}", file=sys.stderr)
                    return 2
                extra.append((label, Path(path), loader))
        names = args.weights if args.weights is not None else [n for n, m in available().items()
                                                               if m.get("pair") == args.pair]
        ms = {n: load(n, "cpu") for n in names}
        for label, path, loader in extra:
            ms[label] = loader(path)
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
