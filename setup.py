"""Builds the optional fused CPU kernels; everything else (the learned engine's weights included,
as package data) is declared in pyproject.toml."""
import sys

from setuptools import Extension, setup

openmp = [] if sys.platform == "win32" else ["-fopenmp"]
setup(ext_modules=[Extension(
    "tinct.native._kernels", ["daemon/tinct/native/_kernels.c"],
    extra_compile_args=["-O3"] + openmp, extra_link_args=openmp,
    optional=True,  # no compiler: tinct runs on plain PyTorch instead
)])
