"""The lora_edit track: its spec (spec.py) and its code (track.py)."""
