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


def test_a_heading_wider_than_the_panels_wraps_onto_more_lines():
    """A long heading (file names, a shift with its ground metres, the verdict) is broken at spaces
    to the picture's width, each line drawn: one line had run off the right edge with the verdict."""
    from georeg.quicklook import _wrapped

    p = np.zeros((50, 60, 3), np.uint8)
    short = compose([[("a", p)]], heading="title")
    long = compose([[("a", p)]], heading=" ".join(["word"] * 30))
    assert long.shape[1] == short.shape[1] and long.shape[0] >= short.shape[0] + 19 * 5
    assert (long[: long.shape[0] - short.shape[0] + 26, :, 0] < 128).any()  # ink on the added lines
    lines = _wrapped("aa bb cc dd " + "x" * 40, len, 8)
    assert lines == ["aa bb cc", "dd", "x" * 40]
