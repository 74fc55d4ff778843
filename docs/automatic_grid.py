"""Rebuild docs/images/automatic.jpg: the learned engine's automatic colours on 16 eval photos.

    python docs/automatic_grid.py        (needs ../shared/data/eval beside the checkout)

The photos are a fixed list, not picked for looks: every photo at an even step through the
sorted eval set (Kodak, then McMaster), at the protocol's 256², made grey and colorized with no
strokes at the default vibrancy.  Each pair shows the automatic answer, then the original.
"""
from pathlib import Path

import numpy as np
from PIL import Image

import tinct
from tinct.training import measure

ROOT = Path(__file__).resolve().parents[1]
COUNT, SIDE, COLUMNS = 16, 128, 4  # photos, thumbnail side, pairs a row

photos = list(measure.eval_images(ROOT.parent / "shared/data/eval"))
chosen = [photos[i * len(photos) // COUNT] for i in range(COUNT)]
sheet = Image.new("RGB", (2 * COLUMNS * SIDE + (COLUMNS - 1) * 8, (COUNT // COLUMNS) * SIDE), "white")
for k, (name, rgb) in enumerate(chosen):
    auto = tinct.colorize(np.ascontiguousarray(measure.gray_of(rgb)), engine="learned")
    x, y = (k % COLUMNS) * (2 * SIDE + 8), (k // COLUMNS) * SIDE
    for i, img in enumerate((auto, rgb)):
        sheet.paste(Image.fromarray(img).resize((SIDE, SIDE), Image.Resampling.LANCZOS), (x + i * SIDE, y))
    print(name, f"{measure.psnr(auto, rgb):.2f} dB (grey {measure.psnr(measure.gray_of(rgb), rgb):.2f})")
sheet.save(ROOT / "docs/images/automatic.jpg", quality=85)
