"""The rerank track: its spec (spec.py) and its code (track.py)."""
