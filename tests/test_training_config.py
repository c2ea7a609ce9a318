"""TrainConfig: frozen and validated; the `train` command line and the manifest's reproducing
command are made from its fields, so the three cannot drift apart."""

import argparse
import dataclasses
import shlex

import pytest

from georeg.errors import ConfigError
from training.train import TrainConfig, add_arguments, config_from_args


def _parse(argv: list[str]) -> TrainConfig:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    return config_from_args(ap.parse_args(argv))


def test_every_field_is_a_train_option_with_its_default():
    cfg = _parse(["--model", "kgl", "--pair", "opt-sar"])
    assert cfg == TrainConfig(model="kgl", pair="opt-sar")


def test_command_reproduces_the_config():
    cfg = TrainConfig(model="rrl", pair="opt-ir", batch=64, steps=2000, warmup_steps=0, decay_from=800,
                      shift_frac=0.05, near_fraction=0.0, threads=1, out_dir="runs x")
    argv = shlex.split(cfg.command().replace("python -m training train ", ""))
    assert _parse(argv) == cfg
    assert "--lr-head" not in cfg.command()  # defaults are left out


def test_frozen_and_validated():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 5
    for bad in ({"model": "sift"}, {"steps": 0}, {"near_fraction": 1.0}, {"decay_floor": 0}, {"batch": 1}):
        with pytest.raises(ConfigError, match="training: "):
            TrainConfig(**bad)


def test_from_dict_ignores_keys_of_other_versions():
    assert TrainConfig.from_dict({"model": "rrl", "pair": "opt-ir", "extra": {}}).model == "rrl"
