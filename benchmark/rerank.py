"""Former home of :mod:`benchmark.tracks.rerank.track` (the same module under its old name).

Why kept: records, submissions and scripts of earlier versions name classes and functions
by this path (e.g. ``"benchmark.rerank:..."``). Importing it yields the very module
:mod:`benchmark.tracks.rerank.track`, so both names resolve to the same objects.
"""

import sys

import benchmark.tracks.rerank.track as _module

sys.modules[__name__] = _module
