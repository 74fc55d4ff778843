"""The learned engine's weights and model card: top-level `models/` in the checkout, the package
`tinct.models` once installed (pyproject.toml maps it), read with importlib.resources."""
