"""Shared fixtures. Real data is read from ../shared/data (or $GEOREG_SHARED_DATA) and tests
that need it skip with a clear reason when it is absent; CI always has it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a 'georeg serve' the developer left running must not take the tests' CLI runs (tests/test_server.py
# switches it on for its own server)
os.environ["GEOREG_SERVER"] = "off"


def shared_data_dir() -> Path:
    env = os.environ.get("GEOREG_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _tune_cpu():
    from georeg.runtime import tune_malloc

    tune_malloc()


def _files(d: Path) -> set[str]:
    return {os.path.join(root, f) for root, _, names in os.walk(d) for f in names}


@pytest.fixture(scope="session", autouse=True)
def _shared_data_untouched():
    """The tests read ../shared/data and leave it as they found it: a file that appears there
    during the run (an output, a lock, a GDAL .aux.xml sidecar) fails the session."""
    d = shared_data_dir()
    before = _files(d) if d.is_dir() else set()
    yield
    new = sorted(_files(d) - before) if d.is_dir() else []
    assert not new, f"the tests wrote {len(new)} file(s) into {d}: {', '.join(new[:5])}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not (d / "s1s2_volkov").is_dir():
        pytest.skip(f"real data not found at {d}: put the shared data beside the repository "
                    "(../shared/data) or set GEOREG_SHARED_DATA")
    return d


@pytest.fixture(scope="session")
def volkov(shared_data) -> Path:
    return shared_data / "s1s2_volkov" / "geotiff"


@pytest.fixture(scope="session")
def landsat(shared_data) -> Path:
    return shared_data / "landsat8_oli_tirs"


@pytest.fixture(scope="session")
def landsat_clear_mask(landsat, tmp_path_factory) -> Path:
    """Clear-sky mask (1 = usable) from the scene's own BQA band: cloud confidence 'maybe' or
    'yes' (bits 14-15 >= 2), dilated by 5 px. Cumulus clouds shift between OLI and TIRS views
    (parallax), so tie points on them disagree with the ground; masks are how users exclude them."""
    import rasterio
    from scipy import ndimage

    out = tmp_path_factory.mktemp("l8") / "l8_clear.tif"
    with rasterio.open(landsat / "l8_BQA.tif") as d:
        q = d.read(1)
        prof = d.profile
    cloud = ((q >> 14) & 3) >= 2
    clear = ~ndimage.binary_dilation(cloud, iterations=5)
    prof.update(dtype="uint8", nodata=None)
    with rasterio.open(out, "w", **prof) as d:
        d.write(clear.astype("uint8")[None])
    return out


@pytest.fixture(scope="session")
def small_pair(tmp_path_factory):
    """``small_pair(target_name, size=320, seed=5)``: a synthetic optical/SAR-like pair whose target
    content is off by (+6, -4) px, made once per (name, size, seed) for the whole run."""
    import numpy as np
    from synthetic import synthetic_pair

    made: dict = {}

    def make(target_name: str = "tgt.tif", size: int = 320, seed: int = 5):
        key = (target_name, size, seed)
        if key not in made:
            d = tmp_path_factory.mktemp("small_pair")
            ref, tgt = d / "ref.tif", d / target_name
            synthetic_pair(str(ref), str(tgt), size=size, seed=seed,
                           new_to_old=np.array([[1, 0, 6.0], [0, 1, -4.0], [0, 0, 1.0]]))
            made[key] = (ref, tgt)
        return made[key]

    return make
