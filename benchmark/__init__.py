"""gembench: a benchmark suite for generative-image personalization.

The Python API mirrors the CLI: ``benchmark.api`` holds one function per command.
Heavy libraries (torch, RecBole, open_clip, transformers, ray) are imported lazily,
inside the methods that need them, so importing this package stays fast.
"""

__version__ = "0.1.0"
