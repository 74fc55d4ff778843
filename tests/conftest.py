"""Shared test set-up: one torch thread, because the CI machine has two cores and
other jobs (a daemon under test, an editor) share them; tiny tensors get no faster
from threads and contention makes them much slower."""
from pathlib import Path

import tinct_krita  # plugins/krita, on pytest's pythonpath (pyproject.toml)
import torch

torch.set_num_threads(1)
# the Krita plugin as the installer lays it out: plugins/common's modules inside the package
tinct_krita.__path__.append(str(Path(__file__).resolve().parents[1] / "plugins" / "common"))
