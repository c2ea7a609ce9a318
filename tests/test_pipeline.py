"""georeg.pipeline: argument and output checks before any work, progress, cancellation, and the
stages' result on a small synthetic pair."""

import numpy as np
import pytest

import georeg
from georeg.config import RegistrationConfig
from georeg.errors import CancelledError, InputError, InputWarning, OutputExistsError, UnknownMatcherError
from georeg.preflight import check_outputs


@pytest.fixture(scope="module")
def pair(small_pair):
    return small_pair("sar.tif")


def test_check_outputs_refuses_before_any_work(tmp_path, pair):
    ref, tgt = pair
    with pytest.raises(InputError, match="also an input"):
        check_outputs({"raster": str(tgt)}, [str(ref), str(tgt)], overwrite=True)
    with pytest.raises(InputError, match="share the path"):
        check_outputs({"raster": str(tmp_path / "a.tif"), "log": str(tmp_path / "a.tif")}, [], True)
    with pytest.raises(InputError, match="report output .*a.txt is written as JSON: give it a .json name"):
        check_outputs({"raster": str(tmp_path / "a.tif"), "report": str(tmp_path / "a.txt")}, [], True)
    (tmp_path / "b.tif").write_text("old")
    # Python callers are told the keyword; the CLI turns `overwrite=True` into --overwrite (test_cli)
    with pytest.raises(OutputExistsError, match="use `overwrite=True`"):
        check_outputs({"raster": str(tmp_path / "b.tif")}, [], overwrite=False)
    with pytest.raises(InputError, match="does not exist"):
        check_outputs({"raster": str(tmp_path / "nope" / "c.tif")}, [], True)


def test_register_refuses_bad_arguments(tmp_path, pair):
    ref, tgt = pair
    with pytest.raises(InputError, match="config must be a georeg RegistrationConfig"):
        georeg.register(ref, tgt, tmp_path / "o.tif", {"model": "affine"})
    with pytest.raises(InputError, match="output must be a file path"):
        georeg.register(ref, tgt, "  ")
    with pytest.raises(InputError, match="matcher must be a matcher name .* got int"):
        georeg.register(ref, tgt, tmp_path / "o.tif", matcher=42)
    with pytest.raises(UnknownMatcherError, match="nonsense"):
        georeg.register(ref, tgt, tmp_path / "o.tif", matcher="nonsense")
    assert not list(tmp_path.iterdir())


def test_the_same_file_as_reference_and_target_is_flagged(tmp_path, pair):
    """A copy-paste slip: the identity comes back, with a warning that says why."""
    ref, _ = pair
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, estimation={"model": "translation"})
    with pytest.warns(InputWarning, match="the reference and the target are the same file"):
        res = georeg.register(ref, ref, tmp_path / "o.tif", cfg)
    assert np.allclose(res.report["shift"]["mean_px"], 0, atol=0.05)


def test_a_matcher_given_by_name(tmp_path, pair):
    """``matcher`` takes a name as the option does, resolved against the target's modality."""
    ref, tgt = pair
    cfg = RegistrationConfig().with_options(estimation={"model": "translation"},
                                            output={"report": "auto", "tie_points": "None", "quicklook": "none"})
    res = georeg.register(ref, tgt, tmp_path / "o.tif", cfg, matcher="baseline")
    assert res.report["matcher"]["name"] == "baseline"
    assert res.report["config"]["matching"]["matcher"] == "baseline"
    # the side outputs' words as on the command line: 'auto' beside the raster, 'none' not written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "o_report.json"]


def test_progress_cancel_and_result(tmp_path, pair):
    ref, tgt = pair
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline"}, estimation={"model": "translation"},
                                            output={"report": str(tmp_path / "r.json")})
    with pytest.raises(CancelledError):
        georeg.register(ref, tgt, tmp_path / "c.tif", cfg, cancel=lambda: True)
    assert not list(tmp_path.iterdir()), "a cancelled run leaves nothing"
    seen = []
    res = georeg.register(ref, tgt, tmp_path / "o.tif", cfg, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)
    assert res.quality == "reliable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "r.json"]
    assert set(res.report["timings_s"]) >= {"open", "coarse", "pass1", "verdict", "write", "total"}


@pytest.fixture(scope="module")
def four_tiles(small_pair):
    """A 512 px synthetic pair (target content off by (+6, -4) px) matched in 256 px tiles: 2 x 2."""
    return small_pair("tgt.tif", size=512, seed=3)


def _tiled(tmp_path, ref, tgt, max_tiles: int, name: str, **matching):
    """The first pass at its full radius, then the refinement pass (not the near pass through the
    coarse shift, which can stand in for both on a scene this small)."""
    cfg = RegistrationConfig().with_options(
        matching={"matcher": "baseline", "tile_size_px": 256, "max_tiles": max_tiles, "near_pass": False, **matching},
        estimation={"model": "translation"}, output={"report": str(tmp_path / f"{name}.json")})
    return georeg.register(ref, tgt, tmp_path / f"{name}.tif", cfg)


def test_a_large_scene_is_matched_on_a_spread_sample_of_tiles(tmp_path, four_tiles):
    ref, tgt = four_tiles
    some = _tiled(tmp_path, ref, tgt, 2, "some")
    assert some.report["counts"]["tiles"] == 4 and some.report["counts"]["tiles_matched"] == [2, 2]
    assert len(np.unique(some.tie_points["tile"])) == 2
    assert np.allclose(some.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)


def test_a_sampled_pass_matches_the_central_part_of_each_tile_within_a_budget(tmp_path, four_tiles, monkeypatch):
    """Over many tiles each is matched in its central part (the model needs a few thousand tie
    points, spread wide); max_tiles=0, every tile, matches the whole tiles."""
    from georeg import passes

    ref, tgt = four_tiles
    monkeypatch.setattr(passes, "PASS_KEYPOINTS", 200)  # 4 whole tiles x 192 would be 768 per direction
    # 32 px patches: a window stays at least four patches (128 px) wide
    shared = _tiled(tmp_path, ref, tgt, 4, "shared", patch_size_px=32)
    assert shared.report["counts"]["tiles_matched"] == [4, 4]
    xy = shared.tie_points[["ref_col", "ref_row"]].to_numpy()
    # the central 256 * sqrt(200 / 768) = 131 px of each 256 px tile (plus the search radius)
    assert (np.abs(xy % 256 - 128) < 131 / 2 + 12).all()
    assert np.allclose(shared.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)


def test_pass_windows_shrink_only_a_sampled_pass_over_the_budget():
    from types import SimpleNamespace

    from rasterio.windows import Window

    from georeg import passes

    def scene(n_tiles, **matching):
        cfg = RegistrationConfig().with_options(matching=matching)
        return SimpleNamespace(cfg=cfg, tiles=[Window(1024 * i, 0, 1024, 1024) for i in range(n_tiles)])

    sc = scene(36)
    w = passes.pass_windows(sc, list(range(36)), budget=True)[0]
    side = round(1024 * (passes.PASS_KEYPOINTS / (36 * 192)) ** 0.5)  # 483 px
    assert (w.width, w.height, w.col_off, w.row_off) == (side, side, (1024 - side) // 2, (1024 - side) // 2)
    assert passes.pass_windows(sc, [0, 1, 2, 3], budget=True) == sc.tiles[:4]  # 768 keypoints: whole tiles
    assert passes.pass_windows(sc, list(range(36)), budget=False) == sc.tiles  # the local model's refinement
    sc0 = scene(36, max_tiles=0)
    assert passes.pass_windows(sc0, list(range(36)), budget=True) == sc0.tiles  # every tile, whole
    small = passes.pass_windows(scene(400), list(range(400)), budget=True)[0]
    assert small.width == 4 * 64  # never under four patches


def test_the_other_tiles_are_matched_when_the_sample_gives_no_clear_model(tmp_path, four_tiles):
    import rasterio

    from georeg.tiling import spread, tiles

    ref, tgt = four_tiles
    ts = tiles(rasterio.windows.Window(0, 0, 512, 512), 256)
    (only,) = spread(ts, 1)
    with rasterio.open(ref) as d:
        prof, a = d.profile, d.read()
    t = ts[only]
    a[:, t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width] = 120  # no structure where the sample is
    flat = tmp_path / "ref_flat.tif"
    with rasterio.open(flat, "w", **prof) as d:
        d.write(a)
    res = _tiled(tmp_path, flat, tgt, 1, "flat")
    assert res.report["counts"]["tiles_matched"] == [4, 4]
    per_tile = np.bincount(res.tie_points["tile"], minlength=4)
    assert per_tile[only] < 0.25 * np.delete(per_tile, only).min()  # points near its edges only
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)


def test_a_scene_of_one_tile_gets_a_whole_tiles_keypoints(tmp_path, small_pair, four_tiles):
    """A 512 px scene (a quarter of a 1024 px tile) is matched with keypoints_per_tile keypoints,
    not a quarter of them; a scene of several tiles keeps the density by area."""
    ref, tgt = small_pair("sar.tif", size=512)
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline", "keypoints_per_tile": 400},
                                            estimation={"model": "translation"})
    one = georeg.register(ref, tgt, tmp_path / "one.tif", cfg)
    # by area it was 100 keypoints per direction and pass: 400 tie points at most
    assert one.report["counts"]["tie_points"] > 2 * 2 * 100
    ref4, tgt4 = four_tiles
    four = _tiled(tmp_path, ref4, tgt4, 0, "four", keypoints_per_tile=100)
    assert np.bincount(four.tie_points["tile"]).max() <= 2 * 2 * 100  # each 256 px tile: its own 100


def _near(tmp_path, ref, tgt, name: str, near: bool, **estimation):
    cfg = RegistrationConfig().with_options(matching={"matcher": "baseline", "near_pass": near},
                                            estimation=estimation)
    return georeg.register(ref, tgt, tmp_path / f"{name}.tif", cfg)


def test_a_clear_coarse_shift_on_a_small_scene_is_refined_at_once(tmp_path, pair):
    """A small scene whose coarse shift is clear starts the tile matching from it at the
    refinement radius; when the model found lies within a pixel of that shift, that pass was the
    refinement, and the result is the one of a first pass at the full radius and a refinement."""
    ref, tgt = pair
    near, full = _near(tmp_path, ref, tgt, "near", True), _near(tmp_path, ref, tgt, "full", False)
    counts = near.report["counts"]
    assert counts["first_pass"] == "near the coarse shift" and counts["near_pass_was_refinement"] is True
    assert counts["passes"] == 1 and counts["tiles_matched"] == [1]
    assert full.report["counts"]["first_pass"] == "full radius" and full.report["counts"]["passes"] == 2
    assert np.allclose(near.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)
    assert np.allclose(near.report["shift"]["mean_px"], full.report["shift"]["mean_px"], atol=0.05)
    assert near.quality == full.quality == "reliable"


def test_a_model_away_from_the_coarse_shift_is_refined_through_itself(tmp_path):
    """Scaled by 1%, the pair's model moves its corners by a few pixels from the coarse shift's
    translation: the near pass gives the first model and a refinement pass samples through it."""
    from synthetic import synthetic_pair

    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    s = 1.01
    synthetic_pair(str(ref), str(tgt), size=480, seed=4, new_to_old=np.array([[s, 0, 5.0], [0, s, -3.0], [0, 0, 1]]))
    res = _near(tmp_path, ref, tgt, "o", True, model="similarity")
    counts = res.report["counts"]
    assert counts["first_pass"] == "near the coarse shift" and counts["near_pass_was_refinement"] is False
    assert counts["passes"] == 2 and counts["tiles_matched"] == [1, 1]
    assert abs(res.report["model"]["parameters"]["scale_x"] - s) < 0.002, res.report["model"]["parameters"]


def test_the_refinement_pass_of_a_one_tile_scene_reuses_the_reference_side(tmp_path, monkeypatch):
    """The near pass and the refinement pass of a one-tile scene search the same window of the
    reference: the second takes its read, features and keypoints from the first, and the result
    is the same, bit for bit, as when both compute them."""
    from synthetic import synthetic_pair

    from georeg import matching, passes

    ref, tgt = tmp_path / "ref.tif", tmp_path / "sar.tif"
    synthetic_pair(str(ref), str(tgt), size=480, seed=4,
                   new_to_old=np.array([[1.01, 0, 5.0], [0, 1.01, -3.0], [0, 0, 1]]))
    prepared, real_prepare = [], matching._prepared
    features, real_features = [], matching._add_features

    def counted(side, source, data, matcher):
        prepared.append(source.path if side.features is None else "kept")
        return real_prepare(side, source, data, matcher)

    def computed(side, matcher):
        features.append(side.image.shape)
        return real_features(side, matcher)

    monkeypatch.setattr(matching, "_prepared", counted)
    monkeypatch.setattr(matching, "_add_features", computed)
    kept = _near(tmp_path, ref, tgt, "kept", True, model="similarity")
    assert kept.report["counts"]["tiles_matched"] == [1, 1]
    kept_prepared, prepared[:] = list(prepared), []
    kept_features, features[:] = len(features), []
    monkeypatch.setattr(passes, "Sources", lambda *a: matching.Sources(*a[:3], None))
    fresh = _near(tmp_path, ref, tgt, "fresh", True, model="similarity")
    # the reference prepared once, not twice; the target (sampled through each pass's prior) twice,
    # the second time beside its keypoints' detection (matching._both_sides)
    two = matching.directions_side_by_side(1)  # a second core: the kept side's pass goes through _both_sides
    assert kept_prepared == ([str(ref), str(tgt)] if two else [str(ref), str(tgt), "kept", str(tgt)])
    assert kept_features == 3
    assert prepared == [str(ref), str(tgt), str(ref), str(tgt)] and len(features) == 4
    assert kept.report["model"] == fresh.report["model"]
    assert kept.report["counts"]["tie_points"] == fresh.report["counts"]["tie_points"]


def test_a_coarse_shift_the_near_pass_cannot_confirm_gets_the_full_radius(tmp_path, pair, monkeypatch):
    """A clear but wrong coarse shift (here moved 20 px, beyond the refinement radius) leaves the
    near pass with a few tie points, some agreeing by chance; the first pass at the full radius
    around the same shift finds the true one."""
    from dataclasses import replace

    from georeg import coarse

    real = coarse.coarse_shift

    def off(*args, **kwargs):
        found = real(*args, **kwargs)
        return replace(found, shift_px=(found.shift_px[0] + 20.0, found.shift_px[1]))

    monkeypatch.setattr(coarse, "coarse_shift", off)
    ref, tgt = pair
    res = _near(tmp_path, ref, tgt, "o", True)
    assert res.report["coarse"]["used"] and res.report["coarse"]["shift_px"][0] > 10  # truth: -6
    counts = res.report["counts"]
    assert counts["first_pass"] == "full radius after a weak near pass" and counts["tiles_matched"] == [1, 1, 1]
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)
    assert res.quality == "reliable"


def test_a_weak_structural_near_pass_is_matched_again_with_the_learned_ranker(tmp_path, pair, monkeypatch):
    """With a learned matcher, a near pass that comes out weak on the structural matcher alone is
    matched again with the learned ranker before the first pass at the full radius is tried, as a
    weak first pass is; a ranked near pass within a pixel of the coarse shift is the refinement.
    (The structural pass is made weak here by dropping its tie points.)"""
    from georeg import first_pass, passes

    real = passes._matched_sample
    calls = []

    def structural_weak(sc, inverse, radius, kind, refine, roles):
        calls.append(roles.ranker is not None)
        if roles.ranker is None:
            tp, _ = real(sc, inverse, radius, kind, refine, roles)
            return tp.subset(np.arange(min(3, len(tp)))), None
        return real(sc, inverse, radius, kind, refine, roles)

    monkeypatch.setattr(passes, "_matched_sample", structural_weak)  # the ranked-again pass's caller
    monkeypatch.setattr(first_pass, "_matched_sample", structural_weak)  # the near pass's
    ref, tgt = pair
    cfg = RegistrationConfig().with_options(matching={"matcher": "auto"})
    res = georeg.register(ref, tgt, tmp_path / "o.tif", cfg)
    counts = res.report["counts"]
    assert calls == [False, True]  # the near pass, again with the ranker, and no refinement pass
    assert counts["first_pass"] == "near the coarse shift" and counts["near_pass_was_refinement"] is True
    assert res.report["matcher"]["first_passes"]["ranked_again"] == 1
    assert np.allclose(res.report["shift"]["mean_px"], (6.0, -4.0), atol=0.3)
    assert res.quality == "reliable"
