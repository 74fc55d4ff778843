"""Colour and pixels: sRGB <-> Lab (`lab`), the callers' pixel layouts (`pixels`), the hints
layer (`hints`) and image files (`imagefile`).  No engine, no server."""
