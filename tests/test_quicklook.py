"""georeg.quicklook: the picture's building blocks, pure arrays in and out."""

import numpy as np

from georeg.quicklook import checkerboard, compose, nice_length, overlay, scale_bar, zoom


def test_overlay_is_grey_where_aligned_and_coloured_where_not():
    a = np.zeros((40, 40))
    a[:, 20:] = 1.0
    same = overlay(a, a)
    assert (same[..., 0] == same[..., 1]).all()
    off = overlay(a, np.roll(a, 3, axis=1))
    assert (off[..., 0] != off[..., 1]).any()


def test_checkerboard_alternates():
    out = checkerboard(np.zeros((64, 64)), np.ones((64, 64)), cells=4)
    assert out.shape == (64, 64, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 20].tolist() != [0, 0, 0]


def test_scale_bar_lengths():
    assert [nice_length(x) for x in (0.5, 7, 130, 4800)] == [0.5, 5, 100, 2000]
    img = np.full((200, 300, 3), 128, np.uint8)
    assert (scale_bar(img, 10.0) != img).any()


def test_compose_stacks_panels_under_a_heading():
    p = np.zeros((50, 60, 3), np.uint8)
    out = compose([[("a", p), ("b", p)], [("c", p)]], heading="title")
    assert out.ndim == 3 and out.shape[0] > 100 and out.shape[1] > 120
    assert zoom(p, 120).shape[:2] == (100, 120)
