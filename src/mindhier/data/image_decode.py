"""Decoding any image file to 8-bit RGB: every mode and bit depth converted by its meaning, or refused.

PIL's own `convert("RGB")` clips 16- and 32-bit greyscale to white and drops transparency onto black;
here 16-bit images are scaled by their full range (65535 → 255), float images by [0, 1], transparency is
composited on white, palette and CMYK images go through PIL's colour conversion, and a mode we do not
know is refused with one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mindhier.errors import DataError

MAX_IMAGE_PIXELS = 40_000_000  # as DataConfig.max_image_pixels: readers without a config use this bound
_DIRECT = {"RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GREY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def check_pixels(size: tuple[int, int], source: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    width, height = size
    if width * height > max_pixels:
        raise DataError(
            f"image {source} is {width}×{height} = {width * height:,} pixels, more than data.max_image_pixels = "
            f"{max_pixels:,}; downscale it, or raise the bound with --set data.max_image_pixels=N"
        )


def image_to_rgb(image: Image.Image, source: str | Path = "image") -> Image.Image:
    """`image` as an 8-bit RGB PIL image (transparency on white); refuses modes it cannot convert faithfully."""
    mode = image.mode
    if mode in _ALPHA or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _DIRECT:
        return image.convert("RGB")
    if mode in _WIDE_GREY:
        grey = np.asarray(image, dtype=np.float64)
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise DataError(f"{source}: 32-bit integer image with values outside 0..65535; save it as 8 or 16 bit")
        return Image.fromarray(np.round(grey / 257.0).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
            raise DataError(f"{source}: floating-point image outside [0, 1] (or with NaN); save it as 8 or 16 bit")
        return Image.fromarray(np.round(grey * 255).astype(np.uint8), "L").convert("RGB")
    raise DataError(f"{source}: image mode {mode!r} is not supported; convert it to 8-bit RGB")


def read_rgb(path: str | Path, exif: bool = False, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """uint8 [H, W, 3] of an image file (EXIF rotation applied when `exif`); any failure is one `DataError` line.
    An image of more than `max_pixels` pixels is refused from its header, before it is decoded."""
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: our bound decides, with one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                check_pixels(opened.size, path, max_pixels)
                image = ImageOps.exif_transpose(opened) if exif else opened
                return np.asarray(image_to_rgb(image, path), dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as error:
        raise DataError(f"image {path} is too large to decode safely ({error}); downscale it") from error
    except FileNotFoundError as error:
        raise DataError(f"image {path} is missing; restore it") from error
    except Exception as error:  # a corrupt file can fail in any of PIL's decoders, with any error type
        raise DataError(f"cannot read image {path}: {error}; remove or replace it") from error
