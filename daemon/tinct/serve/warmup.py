"""The engines as tinctd starts them: each loaded once and run on a tiny image before the first
request (`warm_engines`), and `tinctd --check`, which does the same in front of the user."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from tinct import __version__

from . import protocol as P
from . import shm

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tinctd")


def warm_engines(device: torch.device) -> dict[str, str]:
    """Load every engine once and run it on a tiny image; name -> "ready" or why not."""
    from tinct import api

    engines = {}
    grey = np.zeros((16, 16), np.uint8)
    for name in api.ENGINES:
        try:
            api.colorize(grey, engine=name, device=device)  # the first call pays for kernels and weights
            engines[name] = "ready"
        except api.ModelNotInstalled as exc:
            engines[name] = f"not installed: {exc}"
            log.warning("engine %s: %s", name, exc)
        except Exception as exc:  # a broken engine must not keep the others from serving
            engines[name] = f"failed: {exc}"
            log.exception("engine %s failed to start", name)
    return engines


def check(device: torch.device) -> int:
    """tinctd --check: device, engines and their models, and a real colorization each; 0 when usable."""
    import torch

    from tinct import api

    print(f"tinct {__version__}, torch {torch.__version__}, protocol {P.VERSION}")
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    folder = shm.directory()
    ways = "memfd buffers, else files" if shm.memfd_possible() else "files"
    print(f"shared memory: {f'{folder} ({ways})' if folder else 'unavailable (pixels travel as frames)'}")
    img = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1))
    hints = np.zeros((32, 32, 4), np.uint8)
    hints[4:8, 4:8] = (200, 50, 50, 255)
    ok = True
    for name in api.ENGINES:
        try:
            engine = api.get_engine(name)
        except api.ModelNotInstalled as exc:
            print(f"engine {name}: not installed ({exc})")
            continue
        try:
            out = api.colorize(img, hints, engine=name, device=device)
            model = f", model {engine.version}" if hasattr(engine, "version") else ""
            print(f"engine {name}: ready{model}; colorize ok ({out.shape[1]}x{out.shape[0]})")
        except Exception as exc:
            print(f"engine {name}: FAILED ({type(exc).__name__}: {exc})")
            ok = False
    return 0 if ok else 1
