"""Builds the optional fused CPU kernels and puts the learned engine's weights into wheels;
everything else is declared in pyproject.toml."""
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

MODEL_FILES = ["models/tinct-hint-v1.pt", "models/MODEL_CARD.md"]


class BuildPyWithModel(build_py):
    """An installed tinct has no checkout beside it, so its wheel carries models/ as tinct/models/
    (tinct.learned.model_path finds it there); editable installs read the checkout's models/."""

    def run(self):
        super().run()
        if not self.editable_mode:
            target = Path(self.build_lib) / "tinct" / "models"
            self.mkpath(str(target))
            for name in MODEL_FILES:
                self.copy_file(name, str(target / Path(name).name))


openmp = [] if sys.platform == "win32" else ["-fopenmp"]
setup(cmdclass={"build_py": BuildPyWithModel}, ext_modules=[Extension(
    "tinct._kernels", ["daemon/tinct/_kernels.c"],
    extra_compile_args=["-O3"] + openmp, extra_link_args=openmp,
    optional=True,  # no compiler: tinct runs on plain PyTorch instead
)])
