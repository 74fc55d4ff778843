"""Command-line tools: `tinct` (`cli`), `tinct doctor` (`doctor`) and where the editors are
(`editors`: `python -m tinct.tools.editors`)."""
