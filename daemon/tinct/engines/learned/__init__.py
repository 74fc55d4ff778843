"""The learned engine: our hint network (`net`), run small and brought to full resolution
edge-aware by the optimization engine's solver (`engine`)."""
