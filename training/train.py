"""Training loops for KGL-Net and RRL-Net with checkpoints, resume, validation FPR95 and a
progress line. Model selection uses the validation split only (never the test split)."""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from georeg.matchers.kgl import KGLNet
from georeg.matchers.rrl import RRLNet

from .augment import augment
from .data import PatchSet, balanced_subset, eval_pairs
from .evaluate import fpr95, fpr95_distance
from .losses import feature_guided_mse, hnsm_bce, hynet_triplet, info_nce, rrl_mlpp


def _opt(default, help: str = "", choices: tuple | None = None, cli: bool = True):
    """A TrainConfig field with what the command line needs (see :func:`add_arguments`)."""
    return field(default=default, metadata={"help": help, "choices": choices, "cli": cli})


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Frozen and validated; the command line (:func:`add_arguments`) and the
    reproducing command in the weights manifest (:meth:`command`) are made from these fields."""

    model: str = _opt("kgl", "network", ("kgl", "rrl"))
    pair: str = _opt("opt-sar", "modality pair", ("opt-sar", "opt-ir"))
    width: float = _opt(1.0, "KGL channel multiplier (1.0 = published)")
    steps: int = _opt(3000, "last training step")
    batch: int = _opt(128, "patch pairs per step")
    lr_features: float = _opt(1e-3, "KGL feature learning rate")
    lr_head: float = _opt(1e-4, "KGL metric-head learning rate")
    lr_rrl: float = _opt(2e-4, "RRL learning rate")
    warmup_steps: int = _opt(800, "InfoNCE instead of the HyNet triplet before this step")
    # The spec trains at a constant rate and lists cosine as an option. decay_from >= 0 keeps the
    # rates constant up to that step and then follows a half cosine down to decay_floor x the rate
    # at the last step. The rate is a function of the step alone, so resuming does not change it.
    decay_from: int = _opt(-1, "from this step, decay the learning rates along a half cosine to --decay-floor x "
                               "at --steps (default -1: constant rates, as the spec)")
    decay_floor: float = _opt(0.05, "final learning rate as a fraction of the initial one, with --decay-from")
    # georeg adaptations (spec section 8): the head also learns to reject the other-modality patch
    # cut 8-14 px away from the keypoint (near negatives, what a registration search must reject),
    # and the per-modality random translation is halved to +-2.5 % (about 1.6 px) so that
    # positives are not misaligned by up to 6 px. near_fraction 0 and shift_frac 0.05 give the spec.
    near_fraction: float = _opt(0.25, "share of the batch given an 8-14 px near negative (0: the spec's training)")
    shift_frac: float = _opt(0.025, "per-modality random translation as a fraction of the patch (spec: 0.05)")
    val_every: int = _opt(250, "validate (FPR95) every this many steps")
    val_pairs: int = _opt(4000, "validation pairs (balanced)")
    seed: int = _opt(0, "random seed")
    threads: int = _opt(2, "torch threads")
    data_dir: str = _opt("training_data", "patch sets from build-data")
    out_dir: str = _opt("training_runs", "checkpoints go to OUT_DIR/RUN_NAME")

    def __post_init__(self) -> None:
        from georeg.errors import ConfigError

        checks = [
            (self.model in ("kgl", "rrl"), f"model must be kgl or rrl; got {self.model!r}"),
            (self.pair in ("opt-sar", "opt-ir"), f"pair must be opt-sar or opt-ir; got {self.pair!r}"),
            (self.width > 0, f"width must be > 0; got {self.width}"),
            (self.steps >= 1, f"steps must be >= 1; got {self.steps}"),
            (self.batch >= 2, f"batch must be >= 2 (positives and negatives); got {self.batch}"),
            (min(self.lr_features, self.lr_head, self.lr_rrl) > 0, "learning rates must be > 0"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0; got {self.warmup_steps}"),
            (self.decay_from >= -1, f"decay_from must be -1 (no decay) or a step; got {self.decay_from}"),
            (0 < self.decay_floor <= 1, f"decay_floor must be in (0, 1]; got {self.decay_floor}"),
            (0 <= self.near_fraction < 1, f"near_fraction must be in [0, 1); got {self.near_fraction}"),
            (0 <= self.shift_frac < 0.5, f"shift_frac must be in [0, 0.5); got {self.shift_frac}"),
            (self.val_every >= 1, f"val_every must be >= 1; got {self.val_every}"),
            (self.val_pairs >= 10, f"val_pairs must be >= 10; got {self.val_pairs}"),
            (self.threads >= 1, f"threads must be >= 1; got {self.threads}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(f"training: {msg}")

    @property
    def run_name(self) -> str:
        w = "" if self.model == "rrl" or self.width == 1.0 else f"-w{self.width:g}"
        return f"{self.model}-{self.pair}{w}"

    def command(self) -> str:
        """The command line that trains this run: the options that differ from the defaults."""
        parts = ["python -m training train", f"--model {self.model}", f"--pair {self.pair}"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "pair") or value == f.default:
                continue
            text = f"{value:g}" if isinstance(value, float) else shlex.quote(str(value))
            parts.append(f"--{f.name.replace('_', '-')} {text}")
        return " ".join(parts)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """From a checkpoint's config (keys this version does not know are left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def add_arguments(parser) -> None:
    """The ``train`` subcommand's options, one per TrainConfig field."""
    for f in fields(TrainConfig):
        meta = f.metadata
        kw = {"help": meta.get("help") or None, "default": f.default}
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if f.name in ("model", "pair"):
            kw.update(required=True, default=None)
        else:
            kw["type"] = type(f.default)
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, **kw)


def config_from_args(args) -> TrainConfig:
    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def _val_set(ps: PatchSet, n: int, seed: int):
    opt, other, y = eval_pairs(ps, seed=seed)
    y, opt, other = balanced_subset(n, seed, y, opt, other)
    return torch.from_numpy(opt), torch.from_numpy(other), y


@torch.no_grad()
def score_pairs(model, opt: torch.Tensor, other: torch.Tensor, batch: int = 512) -> dict[str, np.ndarray]:
    """Metric-head probabilities (and KGL descriptor distances) for uint8 (M, 1, 64, 64) pairs."""
    model.eval()
    probs, dists = [], []
    for i in range(0, len(opt), batch):
        a = opt[i:i + batch].float() / 255
        b = other[i:i + batch].float() / 255
        if isinstance(model, KGLNet):
            ea, eb = model.encode(a, "opt"), model.encode(b, "other")
            probs.append(torch.sigmoid(model.head(ea["f_dif"], eb["f_dif"])))
            dists.append((ea["desc"] - eb["desc"]).norm(dim=1))
        else:
            probs.append(model(a, b))
    out = {"prob": torch.cat(probs).numpy()}
    if dists:
        out["dist"] = torch.cat(dists).numpy()
    return out


def validate(model, val) -> dict[str, float]:
    opt, other, y = val
    s = score_pairs(model, opt, other)
    res = {"fpr95_metric": fpr95(y, s["prob"])}
    if "dist" in s:
        res["fpr95_desc"] = fpr95_distance(y, s["dist"])
    return res


def build_model(cfg: TrainConfig):
    return KGLNet(cfg.width) if cfg.model == "kgl" else RRLNet(training_parts=True)


def _optimizer(model, cfg: TrainConfig):
    if cfg.model == "kgl":
        head = list(model.metric.parameters())
        ids = {id(p) for p in head}
        feats = [p for p in model.parameters() if id(p) not in ids]
        return torch.optim.Adam([{"params": feats, "lr": cfg.lr_features}, {"params": head, "lr": cfg.lr_head}])
    return torch.optim.NAdam(model.parameters(), lr=cfg.lr_rrl)


def lr_scale(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rates at ``step`` (0-based step about to be taken)."""
    if cfg.decay_from < 0 or step < cfg.decay_from or cfg.steps <= cfg.decay_from:
        return 1.0
    t = min(1.0, (step - cfg.decay_from) / (cfg.steps - cfg.decay_from))
    return cfg.decay_floor + (1.0 - cfg.decay_floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _kgl_step(model: KGLNet, a, b, bn, step: int, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    ea, eb = model.encode(a, "opt", with_com=True), model.encode(b, "other", with_com=True)
    if step < cfg.warmup_steps:
        d_loss = info_nce(ea["desc"], eb["desc"])
        with torch.no_grad():
            lr = ea["desc"] @ eb["desc"].t()
            lr.fill_diagonal_(-2)
            hard = lr.argmax(1)
    else:
        d_loss, hard = hynet_triplet(ea["desc"], eb["desc"], ea["desc_raw"], eb["desc_raw"])
        d_loss = d_loss / len(a)  # the spec sums over the batch; per-anchor scale keeps Adam steps comparable
    bce = hnsm_bce(model.head, ea["f_dif"], eb["f_dif"], hard, random_negatives=True)
    mse = feature_guided_mse(ea["f_com"], ea["f_dif"], eb["f_com"], eb["f_dif"])
    out = {"loss": d_loss + bce + mse, "desc": d_loss, "bce": bce, "mse": mse}
    if bn is not None and len(bn):
        k = len(bn)
        en = model.encode(bn, "other")
        near = F.binary_cross_entropy_with_logits(model.head(ea["f_dif"][:k], en["f_dif"]),
                                                  torch.zeros(k, device=bn.device))
        out["loss"] = out["loss"] + near
        out["near"] = near
    return out


def _rrl_step(model: RRLNet, a, b, bn, step: int, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    n = len(a)
    perm = (torch.arange(n) + torch.randint(1, n, (1,))) % n
    half = n // 2
    k = 0 if bn is None else len(bn)  # near negatives belong to the last k samples
    # first half positives, then random negatives, then near negatives
    b2 = torch.cat([b[:half], b[perm[half:n - k]]] + ([bn] if k else []))
    y = torch.cat([torch.ones(half), torch.zeros(n - half)])
    out = model.training_outputs(a, b2)
    loss = rrl_mlpp(out, y, a, b2)
    return {"loss": loss, "bce_main": torch.nn.functional.binary_cross_entropy_with_logits(out["main"], y)}


def train(cfg: TrainConfig, resume: bool = True, log=print) -> Path:
    """Train; returns the path of the best checkpoint (by validation FPR95 of the metric score)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    data = Path(cfg.data_dir)
    train_set = PatchSet.load(data / f"{cfg.pair}_train.npz")
    val = _val_set(PatchSet.load(data / f"{cfg.pair}_val.npz"), cfg.val_pairs, cfg.seed)
    out = Path(cfg.out_dir) / cfg.run_name
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg)
    opt = _optimizer(model, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    state = {"step": 0, "best": math.inf, "history": []}
    last = out / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        log(f"resumed {cfg.run_name} at step {state['step']}")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    gen = torch.Generator().manual_seed(cfg.seed + state["step"])
    rng = np.random.default_rng(cfg.seed + state["step"])
    step_fn = _kgl_step if cfg.model == "kgl" else _rrl_step
    t0, losses = time.time(), []
    while state["step"] < cfg.steps:
        model.train()
        idx = rng.choice(len(train_set), cfg.batch, replace=False)
        k = int(round(cfg.near_fraction * cfg.batch))
        if cfg.model == "rrl":
            k = min(k, cfg.batch // 4)
        near_idx = None if k == 0 else (torch.arange(k) if cfg.model == "kgl" else
                                        torch.arange(cfg.batch - k, cfg.batch))
        aug = augment(torch.from_numpy(train_set.crops[idx]), shift_frac=cfg.shift_frac, generator=gen,
                      near_idx=near_idx)
        a, b, bn = aug if len(aug) == 3 else (*aug, None)
        scale = lr_scale(state["step"], cfg)
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * scale
        parts = step_fn(model, a, b, bn, state["step"], cfg)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        state["step"] += 1
        losses.append({k: float(v.detach()) for k, v in parts.items()})
        if state["step"] % 25 == 0:
            mean = {k: np.mean([x[k] for x in losses]) for k in losses[0]}
            rate = 25 / (time.time() - t0)
            eta = (cfg.steps - state["step"]) / max(rate, 1e-9)
            log(f"[{cfg.run_name}] step {state['step']}/{cfg.steps} "
                + " ".join(f"{k} {v:.3f}" for k, v in mean.items()) + f" | {rate:.2f} step/s, eta {eta / 60:.0f} min")
            t0, losses = time.time(), []
        if state["step"] % cfg.val_every == 0 or state["step"] == cfg.steps:
            res = validate(model, val)
            res["step"] = state["step"]
            state["history"].append(res)
            log(f"[{cfg.run_name}] validation at step {state['step']}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in res.items() if k != "step"))
            if res["fpr95_metric"] < state["best"]:
                state["best"] = res["fpr95_metric"]
                torch.save({"model": model.state_dict(), "config": asdict(cfg), "val": res}, out / "best.pt")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                        "config": asdict(cfg)}, last)
            t0 = time.time()
    return out / "best.pt"
