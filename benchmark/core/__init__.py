"""The bottom layer: errors, the one atomic writer, progress bars, method parameters.

It imports nothing else from ``benchmark`` (tests/test_layers.py checks it), so every other
layer may use it.
"""
