"""Reading and writing photo files (PNG, JPEG, TIFF) at 8 and 16 bits, depth kept.

Each format goes through the library that keeps its full depth: Pillow for 8-bit PNG and JPEG
(it also knows palettes and EXIF orientation), imagecodecs for 16-bit PNG (Pillow would reduce
48/64-bit PNG to 8 bits), tifffile for TIFF. Arrays are HxW (grey), HxWx2 (grey+alpha),
HxWx3 (RGB) or HxWx4 (RGBA), uint8 or uint16 (TIFF may also hold float32/float64 in 0..1).
"""
import os
from pathlib import Path
from typing import cast

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps

_PNG = (".png",)
_JPEG = (".jpg", ".jpeg")
_TIFF = (".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def _kind(path):
    suffix = Path(path).suffix.lower()
    for kind, suffixes in (("png", _PNG), ("jpeg", _JPEG), ("tiff", _TIFF)):
        if suffix in suffixes:
            return kind
    raise ValueError(f"{path}: unknown image type {suffix!r}; use .png, .jpg/.jpeg or .tif/.tiff")


def read(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into a numpy array of its own depth and layout."""
    kind = _kind(path)
    try:
        if kind == "tiff":
            image = _read_tiff(path)
        else:
            with open(path, "rb") as f:
                data = f.read()
            if data[:8] == _PNG_SIGNATURE and len(data) > 24 and data[24] == 16:  # IHDR bit depth
                image = imagecodecs.png_decode(data)
            else:
                image = _read_pillow(path)
    except (OSError, ValueError, imagecodecs.PngError, tifffile.TiffFileError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


def _read_pillow(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith(("I", "F")):  # converting would clip it to 8 bits
            raise ValueError(f"Pillow mode {im.mode} holds more than 8 bits per sample")
        has_alpha = "A" in im.getbands() or "transparency" in im.info
        grey = im.mode in ("1", "L", "LA")
        target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
        return np.array(im.convert(target) if im.mode != target else im)  # writable, unlike asarray


def _read_tiff(path):
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        assert isinstance(page, tifffile.TiffPage)  # the first page always is one (no useframes here)
        if page.photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB):
            photometric = cast(tifffile.PHOTOMETRIC, page.photometric)  # tifffile annotates it int
            raise ValueError(f"{photometric.name} TIFF is not supported; save as grey or RGB")
        image = page.asarray()
        if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and image.ndim == 3:
            image = np.moveaxis(image, 0, -1)
    if image.dtype not in _TIFF_DTYPES:
        raise ValueError(f"{image.dtype} samples are not supported; use 8 or 16 bits or float")
    return image


def write(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write an array to PNG, JPEG or TIFF, chosen by the file's extension.

    JPEG is 8-bit only and has no alpha: 16-bit data is rounded to 8 bits (round half up), and an
    image with alpha is refused rather than silently losing its transparency.
    """
    kind = _kind(path)
    array = _checked(path, array, kind)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if kind == "tiff":
        tifffile.imwrite(
            path,
            array,
            photometric="rgb" if channels >= 3 else "minisblack",
            extrasamples=("unassalpha",) if channels in (2, 4) else None,
            planarconfig="contig",
            compression="zlib",
        )
    elif kind == "png" and array.dtype == np.uint16:
        Path(path).write_bytes(imagecodecs.png_encode(array))
    elif kind == "png":
        Image.fromarray(array).save(path)
    else:
        if channels in (2, 4):
            raise ValueError(f"{path}: JPEG cannot store alpha; write PNG or TIFF to keep it")
        if array.dtype == np.uint16:
            array = ((array.astype(np.uint32) * 510 + 65535) // 131070).astype(np.uint8)
        # 4:4:4 and high quality: colour is the whole point of the output.
        Image.fromarray(array).save(path, quality=95, subsampling=0)


def _checked(path, array, kind):
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: image must be a numpy array, got {type(array).__name__}")
    allowed = _TIFF_DTYPES if kind == "tiff" else (np.uint8, np.uint16)
    if array.dtype not in allowed:
        names = ", ".join(np.dtype(d).name for d in allowed)
        raise ValueError(f"{path}: cannot write {array.dtype} as {kind.upper()}; use {names}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and not 2 <= array.shape[2] <= 4) or 0 in array.shape:
        raise ValueError(f"{path}: cannot write an image of shape {array.shape}; expected HxW or HxWx2/3/4")
    return np.ascontiguousarray(array)
