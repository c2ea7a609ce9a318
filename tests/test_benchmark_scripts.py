"""The benchmark scripts' own arithmetic (the scripts themselves run real scenes, outside the tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def test_growth_exponent_of_time_with_area(capsys):
    from scene_speed import print_growth

    rows = [{"size": s, "method": "linear", "seconds": 1e-6 * s * s, "peak_rss_mb": 500, "rc": 0}
            for s in (2000, 4096, 10980)]
    rows += [{"size": s, "method": "flat", "seconds": 60.0, "peak_rss_mb": m, "rc": 0}
             for s, m in ((2000, 900), (10980, 1400))]
    rows += [{"size": 256, "method": "small only", "seconds": 3.0, "rc": 0},
             {"size": 10980, "method": "failed", "rc": 1}]
    print_growth(rows)
    out = capsys.readouterr().out
    assert "linear" in out and "area^1.00" in out.split("linear")[1].splitlines()[0]
    assert "area^0.00" in out.split("flat")[1].splitlines()[0] and "900-1400 MB" in out
    assert "small only" not in out and "failed" not in out


if __name__ == "__main__":
    pytest.main([__file__])
