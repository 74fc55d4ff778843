"""The scene both real-editor tests paint and the checks they make on its pixels.

A real photo made grey, three coloured strokes, a layer moved inside a larger canvas, a colour
reference and a palette: the GIMP and Krita tests set it up in their editor and judge the
"Colorized" layer with the same yardsticks (lightness kept to one 8-bit level, each stroke's hue
where it was painted, a feathered selection blending between the photo and the full result,
the reference's or the palette's colours taken).
"""

import numpy as np
import torch
from PIL import Image

from tinct.color import lab

W, H = 224, 150                          # the photo layer
CANVAS, OFFSETS = (260, 180), (20, 12)   # a bigger canvas, the photo layer moved inside it
SELECTION = (70, 50, 120, 80)            # canvas coordinates (x, y, w, h)
# (colour, x, y, length) of horizontal 3-pixel-thick strokes in photo coordinates
STROKES = [((205, 120, 50), 30, 20, 50), ((60, 105, 200), 150, 100, 50), ((70, 160, 70), 120, 40, 40)]
ONE_LEVEL = 100.0 / 255.0                # one 8-bit level of Lab lightness
REFERENCE_TINT = (-10.0, -45.0)          # Lab a, b of the reference: a strong blue the photo never has
SWATCH_TINT = (45.0, 30.0)               # the two-tone reference's right half: a strong red
SWATCH = (W // 2, 0, W - W // 2, H)      # that half, selected (x, y, w, h) in the reference's image
PALETTE = [(220, 40, 40), (240, 140, 20)]  # the foreground and background colours: red and orange


def grey_photo():
    """A real photo (scikit-image's bundled cat) made grey, as float in 0..1 at full precision."""
    from skimage import data

    image = Image.fromarray(data.chelsea()).resize((W, H), Image.LANCZOS)
    rgb = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
    return lab.lab_to_srgb(torch.cat([lab.srgb_to_lab(rgb)[:1], torch.zeros(2, H, W)]))[0].numpy()


def reference_photo(tint=REFERENCE_TINT):
    """The grey photo mirrored and tinted `tint` all over, as RGB u8: what the reference gives is
    its colour alone, which no engine would find in the grey photo by itself."""
    grey = torch.from_numpy(np.ascontiguousarray(grey_photo()[:, ::-1]))
    lightness = lab.srgb_to_lab(grey[None].expand(3, H, W))[:1]
    ab = torch.tensor(tint).view(2, 1, 1).expand(2, H, W)
    rgb = lab.lab_to_srgb(torch.cat([lightness, ab])).clamp(0, 1)
    return np.round(rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def two_tone_reference():
    """reference_photo, its SWATCH half tinted SWATCH_TINT instead: what a swatch selects matters."""
    both = reference_photo().copy()
    x, y, w, h = SWATCH
    both[y:y + h, x:x + w] = reference_photo(SWATCH_TINT)[y:y + h, x:x + w]
    return both


def swatch_guidance(layout="RGBA"):
    """The guidance fields for two_tone_reference with SWATCH as its swatch, as a plugin sends them
    (RGBA u8, or Krita's BGRA u8)."""
    rgb = two_tone_reference()
    channels = rgb if layout == "RGBA" else rgb[..., ::-1]
    x, y, w, h = SWATCH
    return {"reference": np.dstack([channels, np.full((H, W), 255, np.uint8)]).tobytes(),
            "reference_width": W, "reference_height": H, "reference_layout": layout, "reference_sample": "u8",
            "swatches": [[x, y, x + w, y + h, 0, 0, W, H]]}


def mean_ab(rgb):
    return lab_of(rgb)[1:].reshape(2, -1).mean(axis=1)


def assert_reference_colours(result, without, reference, near=8.0, apart=25.0):
    """The result's mean colour (Lab ab) is the reference's, and far from what the same engine
    gives without the reference (`without`)."""
    got, wanted, other = mean_ab(result), mean_ab(reference), mean_ab(without)
    assert np.hypot(*(got - wanted)) < near, f"mean ab {got} is not the reference's {wanted}"
    assert np.hypot(*(got - other)) > apart, f"mean ab {got} is what it is without the reference ({other})"


def assert_palette_colours(result, without, palette=PALETTE, degrees=25.0, bolder=10.0):
    """The result's mean colour has the palette's mean hue and is clearly more colourful that way
    than what the engine gives without the palette (`without`)."""
    wanted = mean_ab(np.array([palette], np.uint8))
    got, other = mean_ab(result), mean_ab(without)
    hue_error = np.degrees(np.angle(complex(*got) / complex(*wanted)))
    assert abs(hue_error) < degrees, f"mean ab {got}: hue off the palette's {wanted} by {hue_error:.1f} degrees"
    towards = wanted / np.hypot(*wanted)
    assert got @ towards > other @ towards + bolder, f"mean ab {got} no nearer the palette than without it ({other})"


def hints(strokes=STROKES, shape=(H, W), origin=(0, 0)):
    """An RGBA u8 hints layer of `shape` with the strokes painted at `origin` + their position."""
    layer = np.zeros(shape + (4,), np.uint8)
    for colour, x, y, length in strokes:
        layer[origin[1] + y:origin[1] + y + 3, origin[0] + x:origin[0] + x + length] = colour + (255,)
    return layer


def lab_of(rgb):
    """Lab (3, H, W) of an (H, W, >=3) array: integers scaled by their dtype's maximum, floats as 0..1."""
    scale = np.iinfo(rgb.dtype).max if rgb.dtype.kind == "u" else 1.0
    unit = torch.from_numpy(np.ascontiguousarray(rgb[..., :3], dtype=np.float32) / scale).permute(2, 0, 1)
    return lab.srgb_to_lab(unit.clamp(0, 1)).numpy()


def chroma(rgb):
    return np.hypot(*lab_of(rgb)[1:])


def assert_lightness_kept(result, source, tolerance=ONE_LEVEL, where=True):
    assert result.shape[:2] == source.shape[:2]
    difference = np.abs(lab_of(result)[0] - lab_of(source)[0])[where]
    assert difference.max() <= tolerance, f"lightness moved by {difference.max():.3f} (> {tolerance:.3f})"


def assert_hint_colours(result, strokes=STROKES, degrees=10):
    """Where a stroke was painted, the result has the stroke's hue and clearly some colour."""
    result_lab = lab_of(result)
    for colour, x, y, length in strokes:
        hint = lab_of(np.array([[colour]], np.uint8))[:, 0, 0]
        a, b = result_lab[1:, y:y + 3, x:x + length].reshape(2, -1).mean(axis=1)
        hue_error = np.degrees(np.angle(complex(a, b) / complex(hint[1], hint[2])))
        assert abs(hue_error) < degrees, f"stroke {colour}: hue off by {hue_error:.1f} degrees"
        assert np.hypot(a, b) > 0.4 * np.hypot(hint[1], hint[2]), f"stroke {colour}: too grey ({a:.1f}, {b:.1f})"


def assert_selection_respected(result, source, full, margin):
    """SELECTION feathered by up to `margin` px: outside bit-identical to the photo, inside the
    full result (±1), the edge between the two and different from both."""
    result, source, full = (np.asarray(a, dtype=int) for a in (result, source, full))
    x, y, w, h = SELECTION[0] - OFFSETS[0], SELECTION[1] - OFFSETS[1], SELECTION[2], SELECTION[3]
    outside = np.ones((H, W), bool)
    outside[max(y - margin, 0):y + h + margin, max(x - margin, 0):x + w + margin] = False
    assert np.array_equal(result[outside], source[outside]), "pixels outside the selection changed"
    inside = np.s_[y + margin:y + h - margin, x + margin:x + w - margin]
    assert np.abs(result[inside] - full[inside]).max() <= 1
    edge = ~outside
    edge[inside] = False
    low, high = np.minimum(source, full)[edge], np.maximum(source, full)[edge]
    assert np.all((result[edge] >= low - 1) & (result[edge] <= high + 1)), "the feathered edge does not blend"
    assert np.any(result[edge] != source[edge]) and np.any(result[edge] != full[edge])
