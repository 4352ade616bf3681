"""Every image mode and bit depth becomes the right 8-bit RGB, or a clear refusal."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mindhier.data.image_decode import read_rgb
from mindhier.errors import DataError


def _saved(tmp_path, image: Image.Image, name: str = "x.png"):
    path = tmp_path / name
    image.save(path)
    return path


def test_16_bit_greyscale_is_scaled_not_saturated(tmp_path):
    grey = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _saved(tmp_path, Image.fromarray(grey))
    with Image.open(path) as opened:
        assert opened.mode.startswith("I")  # PIL reads 16-bit PNGs as 32-bit integers
    rgb = read_rgb(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 100, 255]


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red; the rest fully transparent black
    rgb = read_rgb(_saved(tmp_path, Image.fromarray(rgba, "RGBA")))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [255, 255, 255]
    la = Image.fromarray(np.array([[[10, 0]]], np.uint8), "LA")
    assert read_rgb(_saved(tmp_path, la, "la.png"))[0, 0].tolist() == [255, 255, 255]


def test_palette_greyscale_and_cmyk_keep_their_colours(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    palette.putpixel((1, 0), 1)
    assert read_rgb(_saved(tmp_path, palette)).tolist() == [[[0, 0, 255], [0, 255, 0]]]
    assert read_rgb(_saved(tmp_path, Image.new("L", (1, 1), 77), "l.png")).tolist() == [[[77, 77, 77]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in CMYK
    assert read_rgb(_saved(tmp_path, cmyk, "c.jpg")).tolist()[0][0][0] > 200


def test_float_images_inside_0_1_are_scaled_and_outside_refused(tmp_path):
    ok = _saved(tmp_path, Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F"), "ok.tif")
    assert read_rgb(ok)[0, :, 0].tolist() == [0, 128, 255]
    bad = _saved(tmp_path, Image.fromarray(np.array([[0.0, 7.0]], np.float32), "F"), "bad.tif")
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        read_rgb(bad)


def test_unreadable_and_missing_files_are_one_line(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read image"):
        read_rgb(junk)
    with pytest.raises(DataError, match="missing"):
        read_rgb(tmp_path / "none.png")
