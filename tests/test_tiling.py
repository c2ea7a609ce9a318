"""georeg.tiling: tiles cover the window exactly, and the trimming keeps every pixel with data."""

import numpy as np
from rasterio.windows import Window

from georeg.tiling import expand, spread, tiles, trim_to_valid, with_data


def test_tiles_cover_the_window_without_overlap():
    win = Window(10, 20, 2500, 1100)
    ts = tiles(win, 1024)
    assert len(ts) == 3 * 2
    assert all(t.width <= 1024 and t.height <= 1024 for t in ts)
    cover = np.zeros((1100, 2500), int)
    for t in ts:
        cover[t.row_off - 20:t.row_off - 20 + t.height, t.col_off - 10:t.col_off - 10 + t.width] += 1
    assert (cover == 1).all()
    assert tiles(Window(0, 0, 300, 200), 1024) == [Window(0, 0, 300, 200)]


def test_expand_adds_a_margin_on_every_side():
    assert expand(Window(5, 6, 10, 20), 3) == Window(2, 3, 16, 26)


def test_trim_and_with_data_keep_the_block_with_data():
    win = Window(0, 0, 4000, 4000)
    valid = np.zeros((400, 400), bool)  # coarse map: 10 px per cell
    valid[120:150, 220:260] = True      # data in x 2200-2600, y 1200-1500
    t = trim_to_valid(win, valid, 0)
    assert t.col_off <= 2200 and t.col_off + t.width >= 2600
    assert t.row_off <= 1200 and t.row_off + t.height >= 1500
    assert t.width < 500 and t.height < 400
    assert trim_to_valid(win, np.zeros((400, 400), bool), 0) == win
    kept = with_data(tiles(win, 1000), win, valid, 0)
    assert {(k.col_off, k.row_off) for k in kept} == {(2000, 1000)}
    # within a margin (or one coarse cell) of the data, a neighbour tile is kept too
    kept = with_data(tiles(win, 1000), win, valid, 250)
    assert {(k.col_off, k.row_off) for k in kept} == {(2000, 1000), (2000, 0), (1000, 1000), (1000, 0)}


def test_spread_picks_tiles_over_the_whole_overlap():
    ts = tiles(Window(0, 0, 10980, 10980), 1024)  # a Sentinel-2 tile: 11 x 11
    pick = spread(ts, 16)
    assert len(pick) == 16 == len(set(pick)) and pick == sorted(pick)
    cells = {(int(4 * (ts[i].col_off + ts[i].width / 2) / 10980), int(4 * (ts[i].row_off + ts[i].height / 2) / 10980))
             for i in pick}
    assert len(cells) == 16, "one sampled tile in each of the 4 x 4 cells of the overlap"
    assert spread(ts, 16) == pick, "deterministic"
    assert spread(ts, 0) == spread(ts, 500) == list(range(121))
