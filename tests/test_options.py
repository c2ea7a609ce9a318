"""Each option is declared once (georeg.options) and reaches the config, the CLI, the batch
manifest and the QGIS plugin with the same name, default and choices."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import click
import pytest

from georeg import cli, manifest
from georeg.config import RegistrationConfig
from georeg.errors import ConfigError
from georeg.options import BY_NAME, MANIFEST_COLUMNS, OPTIONS, Option, config_from_options

REPO = Path(__file__).resolve().parents[1]

# config fields that are not user options, each with the reason; a new field must be either an
# Option or listed here, so that nobody adds a field that no front end can set by accident
INTERNAL = {
    ("matching", "max_shift_unit"): "set by the max_shift option ('400m')",
    ("matching", "coarse_size_px"): "tuning constant of the coarse pass",
    ("matching", "refine_radius_px"): "tuning constant of the refinement pass",
    ("matching", "bidirectional"): "tuning constant of the matching",
    ("matching", "min_score"): "tuning constant of the baseline matcher",
    ("matching", "min_peak_ratio"): "tuning constant of the baseline matcher",
    ("matching", "batch_size"): "memory/speed constant of the matching",
    ("matching", "candidates"): "tuning constant of the learned ranking",
    ("matching", "rank_refinement"): "tuning constant of the learned ranking",
    ("matching", "rank_first_pass"): "tuning constant of the learned ranking",
    ("matching", "near_pass"): "tuning constant of the first pass",
    ("estimation", "ransac_iterations"): "tuning constant of RANSAC",
    ("estimation", "confidence"): "tuning constant of RANSAC",
    ("estimation", "seed"): "reproducibility constant of RANSAC",
    ("estimation", "min_inliers"): "Python API only",
    ("estimation", "polynomial_order"): "Python API only (local_method='polynomial')",
    ("estimation", "local_smoothing"): "Python API only (local_method='tps')",
    ("output", "tie_points"): "a path per command (register: --tie-points; batch: beside each output)",
    ("output", "report"): "a path per command (register: --report; batch: beside each output)",
    ("output", "quicklook"): "a path per command (register: --quicklook; batch: none)",
    ("output", "compress"): "Python API only (--co COMPRESS=... from the CLI)",
    ("reference", "modality"): "the reference is optical",
}


def _all_fields():
    cfg = RegistrationConfig()
    for f in fields(cfg):
        for g in fields(getattr(cfg, f.name)):
            yield f.name, g.name


def test_every_config_field_is_an_option_or_named_internal():
    covered = {(o.section, o.field) for o in OPTIONS}
    for key in _all_fields():
        assert key in covered or key in INTERNAL, f"config field {key} is neither an Option nor INTERNAL"
    assert not covered & set(INTERNAL)
    for key in INTERNAL:
        assert key in set(_all_fields()), f"INTERNAL names {key}, which is not a config field"


def _cli_params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params}


@pytest.mark.parametrize("command", ["register", "batch"])
@pytest.mark.parametrize("opt", OPTIONS, ids=lambda o: o.name)
def test_each_option_is_on_the_cli_with_the_config_default(command, opt: Option):
    params = _cli_params(cli.georeg.commands[command])
    assert opt.name in params, f"{opt.name} missing from 'georeg {command}'"
    p = params[opt.name]
    assert opt.flag in p.opts
    if opt.kind == "list":
        assert p.multiple
    elif opt.kind == "flag":
        assert p.is_flag and opt.default is False  # off unless given (test_cli_defaults_build_the_default_config)
    else:
        assert p.default == opt.default, (opt.name, p.default, opt.default)
    if opt.choices:
        assert tuple(p.type.choices) == tuple(opt.choices)


def test_cli_defaults_build_the_default_config():
    ctx = cli.georeg.commands["register"].make_context("register", ["a.tif", "b.tif", "-o", "c.tif"])
    params = {k: v for k, v in ctx.params.items() if k in BY_NAME}
    assert cli.build_config(params) == RegistrationConfig()


# a non-default value for each manifest column, as a manifest cell, and the config it must give
NON_DEFAULT = {
    "model": ("affine", "estimation", "model", "affine"),
    "matcher": ("baseline", "matching", "matcher", "baseline"),
    "max_shift": ("300m", "matching", "max_shift", 300.0),
    "modality": ("thermal", "target", "modality", "thermal"),
    "ref_band": ("2", "reference", "band", 2),
    "target_band": ("3", "target", "band", 3),
    "ref_nodata": ("-9999", "reference", "nodata", -9999.0),
    "target_nodata": ("0", "target", "nodata", 0.0),
    "ref_crs": ("EPSG:32633", "reference", "crs", "EPSG:32633"),
    "target_crs": ("4326", "target", "crs", "4326"),
    "ref_mask": ("m1.tif", "reference", "mask", "m1.tif"),
    "target_mask": ("m2.tif", "target", "mask", "m2.tif"),
    "threshold": ("2.5", "estimation", "threshold_px", 2.5),
    "tile_size": ("512", "matching", "tile_size_px", 512),
    "patch_size": ("32", "matching", "patch_size_px", 32),
    "keypoints": ("100", "matching", "keypoints_per_tile", 100),
    "max_tiles": ("0", "matching", "max_tiles", 0),
    "coarse": ("no", "matching", "coarse", False),
    "refine": ("false", "matching", "refine", False),
    "polish": ("false", "estimation", "polish", False),
    "local_method": ("polynomial", "estimation", "local_method", "polynomial"),
    "align_grids": ("yes", "output", "align_grids", True),
    "cog": ("1", "output", "cog", True),
    "creation_options": ("compress=zstd; BLOCKXSIZE=256", "output", "creation_options",
                         ("COMPRESS=zstd", "BLOCKXSIZE=256")),
    "resampling": ("cubic", "output", "resampling", "cubic"),
    "search": ("rotation", "matching", "search", "rotation"),
    "accept_uncertain": ("true", "output", "accept_uncertain", True),
}


def test_manifest_columns_are_the_per_pair_options():
    assert set(MANIFEST_COLUMNS) == {o.name for o in OPTIONS if o.manifest}
    assert set(NON_DEFAULT) == set(MANIFEST_COLUMNS), "give each manifest column a test value here"


@pytest.mark.parametrize("column", sorted(NON_DEFAULT))
def test_each_manifest_column_sets_its_config_field(column, tmp_path):
    cell, section, field, expected = NON_DEFAULT[column]
    rows = [{"reference": "r.tif", "target": "t.tif", column: cell}]
    (task,) = manifest.tasks_from_rows(rows, tmp_path, RegistrationConfig(), base_dir=tmp_path)
    assert not task.error, task.error
    got = getattr(getattr(task.config, section), field)
    if field == "mask":
        assert Path(got).name == expected
    else:
        assert got == expected
    assert got != getattr(getattr(RegistrationConfig(), section), field)


@pytest.mark.parametrize("column,cell,message", [
    ("tile_size", "big", "column 'tile_size' has the bad value 'big'"),
    ("coarse", "maybe", "column 'coarse' has the bad value 'maybe'"),
    ("max_shift", "-3", "column 'max_shift'"),
    ("model", "spline", "`model` must be one of"),
    ("target_crs", "EPSG:99999", "must name a coordinate reference system"),
])
def test_bad_manifest_cells_name_the_row_and_column(column, cell, message, tmp_path):
    (task,) = manifest.tasks_from_rows([{"reference": "r.tif", "target": "t.tif", column: cell}], tmp_path,
                                    RegistrationConfig(), base_dir=tmp_path)
    assert "manifest row 1" in task.error and message in task.error


def test_config_from_options_validates_and_refuses_unknown_names():
    cfg = config_from_options({"model": "similarity", "max_shift": "400m", "ref_band": None})
    assert cfg.estimation.model == "similarity" and cfg.matching.max_shift_unit == "m"
    assert cfg.reference.band is None
    with pytest.raises(ConfigError, match="unknown option"):
        config_from_options({"thresh": 2})
    with pytest.raises(ConfigError, match="tile_size"):
        config_from_options({"tile_size": 16})


def _plugin_constants() -> dict:
    tree = ast.parse((REPO / "plugins" / "qgis" / "georeg_qgis" / "algorithms.py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            out[node.targets[0].id] = [ast.literal_eval(e) for e in node.value.elts]
    defaults = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Constant):
            kw = {k.arg: k.value for k in call.keywords}
            if "defaultValue" in kw and isinstance(kw["defaultValue"], ast.Constant):
                defaults[call.args[0].value] = kw["defaultValue"].value
            elif len(call.args) >= 4 and isinstance(call.args[3], ast.Constant):
                defaults[call.args[0].value] = call.args[3].value  # QgsProcessingParameterNumber
    return {"lists": out, "defaults": defaults}


def test_qgis_plugin_choices_and_defaults_match_the_options():
    c = _plugin_constants()
    for plugin_name, option in (("MODELS", "model"), ("SEARCHES", "search"), ("MODALITIES", "modality")):
        assert sorted(c["lists"][plugin_name]) == sorted(BY_NAME[option].choices), plugin_name
        assert c["lists"][plugin_name][0] == BY_NAME[option].default  # the plugin's default is index 0
    assert c["lists"]["MATCHERS"][0] == BY_NAME["matcher"].default
    assert c["defaults"]["MAX_SHIFT"] == BY_NAME["max_shift"].default
    assert c["defaults"]["THRESHOLD"] == BY_NAME["threshold"].default


def test_cli_words_turn_option_names_into_flags():
    from georeg.options import cli_words

    msg = "Try a larger `max_shift`, a simpler `model=translation`; use `overwrite=True` or `creation_options`"
    assert cli_words(msg) == "Try a larger --max-shift, a simpler --model translation; use --overwrite or --co"
    assert cli_words("plain text, no names") == "plain text, no names"
    # a config field that one option sets is named by that option's flag; the reference's and the
    # target's 'band' are two options, so such a field stays as it is
    assert cli_words("`tile_size_px` must be at least 4x `patch_size_px`") == \
        "--tile-size must be at least 4x --patch-size"
    assert cli_words("`keypoints_per_tile` and `threshold_px`") == "--keypoints and --threshold"


def test_a_bad_value_on_the_command_line_is_named_by_its_flag(tmp_path):
    from click.testing import CliRunner

    for args, expected in ((["--tile-size", "10"], "--tile-size must be at least 4x --patch-size (256); got 10"),
                           (["--threshold", "0"], "--threshold must be > 0; got 0.0"),
                           (["--keypoints", "2"], "--keypoints must be >= 4; got 2")):
        out = CliRunner().invoke(cli.georeg, ["register", "a.tif", "b.tif", "-o", str(tmp_path / "c.tif"), *args])
        assert out.exit_code == 2 and expected in out.output, (args, out.output)


def test_options_json_is_applied_over_the_flags():
    ctx = cli.georeg.commands["register"].make_context(
        "register", ["a.tif", "b.tif", "-o", "c.tif", "--keypoints", "50",
                     "--options-json", '{"keypoints": 100, "max_shift": "300m", "coarse": false}'])
    params = {k: v for k, v in ctx.params.items() if k in BY_NAME or k == "options_json"}
    cfg = cli.build_config(params)
    assert cfg.matching.keypoints_per_tile == 100 and cfg.matching.max_shift_unit == "m"
    assert cfg.matching.coarse is False
    for bad, message in (("[1]", "JSON object"), ("{", "JSON object"), ('{"keypoint": 3}', "unknown option")):
        params["options_json"] = bad
        with pytest.raises(ConfigError, match=message):
            cli.build_config(params)


def test_specs_are_the_table_as_plain_data():
    import json

    from georeg.options import specs

    table = json.loads(json.dumps(specs()))
    assert [s["name"] for s in table] == [o.name for o in OPTIONS]
    assert {s["name"]: s["default"] for s in table}["tile_size"] == 1024


@pytest.mark.parametrize("column", sorted(o.name for o in OPTIONS if not o.manifest))
def test_a_whole_run_option_as_a_manifest_column_says_to_give_the_flag(column, tmp_path):
    with pytest.raises(ConfigError, match=f"column '{column}' cannot vary from pair to pair.*--"):
        manifest.tasks_from_rows([{"reference": "r.tif", "target": "t.tif", column: "1"}], tmp_path,
                              RegistrationConfig(), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown manifest column 'nonsense'"):
        manifest.tasks_from_rows([{"reference": "r.tif", "target": "t.tif", "nonsense": "1"}], tmp_path,
                              RegistrationConfig(), base_dir=tmp_path)
