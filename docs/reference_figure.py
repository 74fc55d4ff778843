"""Rebuild docs/images/reference.jpg, the README's colour-from-a-reference example, with the tinct CLI.

    python docs/reference_figure.py        (needs ../shared/data/eval beside the checkout)

Each row: the grey photo, a reference photo (another picture), `tinct colorize --reference`; the
top row with the optimization engine, the bottom row with a second reference and the learned engine.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tinct.color import imagefile
from tinct.training import measure

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared/data/eval"
HEIGHT = 200


def tile(array) -> Image.Image:
    image = Image.fromarray(array).convert("RGB")
    scale = HEIGHT / image.height
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)


source = imagefile.read(EVAL / "kodak24/kodim03.png")
references = [imagefile.read(EVAL / "kodak24/kodim23.png"), imagefile.read(EVAL / "mcmaster18/mcm05.png")]
rows = []
with tempfile.TemporaryDirectory() as tmp:
    photo = Path(tmp, "photo.png")
    imagefile.write(photo, measure.gray_of(source))
    for i, (reference, engine) in enumerate(zip(references, ("optimization", "learned"))):
        ref_path, out = Path(tmp, f"ref{i}.png"), Path(tmp, f"out{i}.png")
        imagefile.write(ref_path, reference)
        subprocess.run([sys.executable, "-m", "tinct.tools.cli", "colorize", str(photo), "--reference", str(ref_path),
                        "--engine", engine, "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
        rows.append([tile(measure.gray_of(source)), tile(reference), tile(imagefile.read(out))])
width = max(sum(t.width for t in row) + 2 * 8 for row in rows)
figure = Image.new("RGB", (width, 2 * HEIGHT + 8), "white")
for r, row in enumerate(rows):
    x = 0
    for t in row:
        figure.paste(t, (x, r * (HEIGHT + 8)))
        x += t.width + 8
figure.save(ROOT / "docs/images/reference.jpg", quality=90)
print(ROOT / "docs/images/reference.jpg")
