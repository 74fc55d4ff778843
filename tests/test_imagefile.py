import numpy as np
import pytest
import tifffile
from PIL import Image

from tinct.color import imagefile

LAYOUTS = [(12, 10), (12, 10, 2), (12, 10, 3), (12, 10, 4)]


def _random(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _smooth_rgb(dtype, h=48, w=64):
    """A gradient JPEG can carry almost unchanged."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x / w, y / h, 0.5 + 0.0 * x], axis=-1)
    return (rgb * np.iinfo(dtype).max + 0.5).astype(dtype)


@pytest.mark.parametrize("ext", [".png", ".tif", ".TIFF"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", LAYOUTS)
def test_lossless_formats_round_trip_bit_exact(tmp_path, ext, dtype, shape):
    image = _random(shape, dtype)
    path = tmp_path / f"photo{ext}"
    imagefile.write(path, image)
    back = imagefile.read(path)
    assert back.dtype == image.dtype and back.shape == image.shape
    assert np.array_equal(back, image)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tiff_round_trips(tmp_path, dtype):
    image = _random((9, 8, 4), dtype)
    imagefile.write(tmp_path / "f.tiff", image)
    back = imagefile.read(tmp_path / "f.tiff")
    assert back.dtype == image.dtype and np.array_equal(back, image)


def test_single_channel_axis_reads_back_as_hxw(tmp_path):
    image = _random((7, 5, 1), np.uint16)
    imagefile.write(tmp_path / "g.png", image)
    assert np.array_equal(imagefile.read(tmp_path / "g.png"), image[..., 0])


def test_16_bit_png_keeps_all_16_bits(tmp_path):
    image = np.full((4, 4, 3), 1000, np.uint16)  # not a multiple of 257: 8 bits cannot hold it
    imagefile.write(tmp_path / "deep.png", image)
    raw = (tmp_path / "deep.png").read_bytes()
    assert raw[24] == 16 and raw[25] == 2  # a real 48-bit RGB PNG
    assert (imagefile.read(tmp_path / "deep.png") == 1000).all()


@pytest.mark.parametrize("ext", [".jpg", ".jpeg"])
@pytest.mark.parametrize("grey", [False, True])
def test_jpeg_round_trip_is_close_and_8_bit(tmp_path, ext, grey):
    image = _smooth_rgb(np.uint8)
    image = image[..., 1] if grey else image
    imagefile.write(tmp_path / f"p{ext}", image)
    back = imagefile.read(tmp_path / f"p{ext}")
    assert back.dtype == np.uint8 and back.shape == image.shape
    assert np.abs(back.astype(int) - image).mean() < 1.0


def test_16_bit_jpeg_is_written_as_rounded_8_bit(tmp_path):
    image = _smooth_rgb(np.uint16)
    imagefile.write(tmp_path / "p.jpg", image)
    back = imagefile.read(tmp_path / "p.jpg")
    assert back.dtype == np.uint8
    assert np.abs(back.astype(float) - image / 257.0).mean() < 1.0
    # The conversion itself, on flat greys (which JPEG stores exactly): round half up of v*255/65535.
    for v, expected in [(128, 0), (129, 1), (32896, 128), (65406, 254), (65407, 255), (65535, 255)]:
        imagefile.write(tmp_path / "flat.jpg", np.full((8, 8), v, np.uint16))
        assert (imagefile.read(tmp_path / "flat.jpg") == expected).all(), v


@pytest.mark.parametrize("shape", [(12, 10, 2), (12, 10, 4)])
def test_jpeg_refuses_alpha_instead_of_dropping_it(tmp_path, shape):
    with pytest.raises(ValueError, match="alpha"):
        imagefile.write(tmp_path / "a.jpg", _random(shape, np.uint8))
    assert not (tmp_path / "a.jpg").exists()


def test_exif_orientation_is_applied_on_read(tmp_path):
    image = _smooth_rgb(np.uint8, h=20, w=30)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    Image.fromarray(image).save(tmp_path / "o.jpg", exif=exif, quality=95)
    back = imagefile.read(tmp_path / "o.jpg")
    assert back.shape == (30, 20, 3)
    assert np.abs(back.astype(int) - np.rot90(image, -1)).mean() < 1.5


def test_palette_png_with_transparency_reads_as_rgba(tmp_path):
    im = Image.new("P", (4, 3))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(tmp_path / "p.png", transparency=0)
    back = imagefile.read(tmp_path / "p.png")
    assert back.shape == (3, 4, 4) and back.dtype == np.uint8
    assert back[1, 1].tolist() == [0, 0, 255, 255] and back[0, 0].tolist() == [255, 0, 0, 0]


def test_planar_tiff_is_returned_channels_last(tmp_path):
    image = _random((3, 6, 5), np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", image, photometric="rgb", planarconfig="separate")
    assert np.array_equal(imagefile.read(tmp_path / "planar.tif"), np.moveaxis(image, 0, -1))


@pytest.mark.parametrize("name", ["x.bmp", "x", "x.png.gz"])
def test_unknown_extensions_are_refused_by_name(tmp_path, name):
    with pytest.raises(ValueError, match="unknown image type") as e:
        imagefile.read(tmp_path / name)
    assert name in str(e.value)
    with pytest.raises(ValueError, match="unknown image type"):
        imagefile.write(tmp_path / name, np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("name", ["bad.png", "bad.jpg", "bad.tif", "missing.png", "trunc.png"])
def test_unreadable_files_raise_value_error_naming_the_file(tmp_path, name):
    if name == "trunc.png":
        imagefile.write(tmp_path / name, _random((40, 40, 3), np.uint16))
        (tmp_path / name).write_bytes((tmp_path / name).read_bytes()[:200])
    elif name != "missing.png":
        (tmp_path / name).write_bytes(b"not an image at all" * 10)
    with pytest.raises(ValueError, match="cannot read") as e:
        imagefile.read(tmp_path / name)
    assert name in str(e.value)


@pytest.mark.parametrize(
    "name, array, message",
    [
        ("f.png", np.zeros((4, 4, 3), np.float32), "float32"),
        ("i.tif", np.zeros((4, 4, 3), np.int32), "int32"),
        ("c.png", np.zeros((4, 4, 5), np.uint8), r"\(4, 4, 5\)"),
        ("e.tif", np.zeros((0, 4), np.uint8), r"\(0, 4\)"),
        ("l.png", [[1, 2]], "numpy array"),
    ],
)
def test_write_refuses_what_it_cannot_store(tmp_path, name, array, message):
    with pytest.raises(ValueError, match=message):
        imagefile.write(tmp_path / name, array)


@pytest.mark.parametrize("name, dtype", [("w.png", np.uint8), ("w.jpg", np.uint8), ("w.png", np.uint16),
                                         ("w.tif", np.uint8)])
def test_arrays_read_are_writable(tmp_path, name, dtype):
    imagefile.write(tmp_path / name, _random((4, 4, 3), dtype))
    assert imagefile.read(tmp_path / name).flags.writeable
