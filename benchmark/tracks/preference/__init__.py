"""The preference track: its spec (spec.py) and its code (track.py)."""
