"""Builds the optional fused CPU kernels; everything else (the learned engine's weights included,
as package data) is declared in pyproject.toml."""
import sys

from setuptools import Extension, setup

openmp = [] if sys.platform == "win32" else ["-fopenmp"]
# No fused multiply-adds: where the CPU has them (ARM, and x86 built with -march) the compiler would
# fuse some sums and not others, and a table built by the same arithmetic as a loop (the per-code
# lightness) would no longer give the loop's bits.
exact = [] if sys.platform == "win32" else ["-ffp-contract=off"]
setup(ext_modules=[Extension(
    "tinct.native._kernels", ["daemon/tinct/native/_kernels.c"],
    extra_compile_args=["-O3"] + exact + openmp, extra_link_args=openmp,
    optional=True,  # no compiler: tinct runs on plain PyTorch instead
)])
