"""Rebuild docs/images/parrots.jpg, the README's before/after, with the tinct CLI.

    python docs/figure.py        (needs ../shared/data/eval beside the checkout)

Left: the grey photo with the simulated strokes drawn enlarged so they show;
middle: `tinct colorize` (optimization engine, final quality); right: the original.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tinct.color import imagefile
from tinct.training import measure

ROOT = Path(__file__).resolve().parents[1]
source = imagefile.read(ROOT.parent / "shared/data/eval/kodak24/kodim23.png")
with tempfile.TemporaryDirectory() as tmp:
    photo, hints = Path(tmp, "parrots.png"), Path(tmp, "parrots.hints.png")
    imagefile.write(photo, measure.gray_of(source))
    layer = measure.hints_of(source, 60, np.random.default_rng(3))
    imagefile.write(hints, layer)
    subprocess.run([sys.executable, "-m", "tinct.tools.cli", "colorize", str(photo)], check=True)
    result = imagefile.read(Path(tmp, "parrots.colorized.png"))
grey = Image.fromarray(measure.gray_of(source)).convert("RGB")
draw = ImageDraw.Draw(grey)
ys, xs = np.nonzero(layer[..., 3])
for y, x in zip(ys.tolist(), xs.tolist()):
    draw.rectangle([x - 3, y - 3, x + 3, y + 3], fill=tuple(layer[y, x, :3].tolist()))
row = np.concatenate([np.asarray(grey), result, source], 1)
out = ROOT / "docs/images/parrots.jpg"
Image.fromarray(row).resize((row.shape[1] // 2, row.shape[0] // 2), Image.LANCZOS).save(out, quality=88)
grey = measure.psnr(measure.gray_of(source), source)
print(f"{out}: PSNR {measure.psnr(result, source):.2f} dB (grey {grey:.2f} dB)")
