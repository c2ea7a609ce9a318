import pytest

from georeg.config import EstimationConfig, InputConfig, MatchingConfig, RegistrationConfig, parse_shift
from georeg.errors import ConfigError, InputError


def test_parse_shift_units():
    assert parse_shift("40") == (40.0, "px")
    assert parse_shift("12.5px") == (12.5, "px")
    assert parse_shift("300m") == (300.0, "m")
    assert parse_shift(7) == (7.0, "px")
    with pytest.raises(ConfigError, match="max shift must be"):
        parse_shift("40km")
    with pytest.raises(ConfigError, match="max shift must be a number"):  # the sign does not parse
        parse_shift("-3")
    with pytest.raises(ConfigError, match="max shift must be positive; got -3.0 px"):
        parse_shift(-3)
    with pytest.raises(ConfigError, match="max shift must be positive; got 0.0 m"):
        parse_shift("0m")


def test_max_shift_in_metres_converts_with_pixel_size():
    m = MatchingConfig(max_shift=300, max_shift_unit="m")
    assert m.max_shift_px(10.0) == 30.0


@pytest.mark.parametrize("kwargs", [{"model": "spline"}, {"threshold_px": 0}, {"local_method": "x"}])
def test_estimation_validates(kwargs):
    with pytest.raises(ConfigError):
        EstimationConfig(**kwargs)


def test_config_errors_are_value_errors_and_input_errors():
    with pytest.raises(ValueError):
        InputConfig(band=0)
    with pytest.raises(InputError):
        MatchingConfig(patch_size_px=63)


def test_frozen_and_roundtrip():
    cfg = RegistrationConfig().with_options(estimation={"model": "translation"}, matching={"max_shift": 60})
    with pytest.raises(AttributeError):
        cfg.estimation.model = "affine"
    again = RegistrationConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with pytest.raises(ConfigError, match="unknown option"):
        RegistrationConfig.from_dict({"matching": {"nope": 1}})
