"""``python -m benchmark.perf``: the package's entry point, so the command runs as before.

The measuring subprocesses are started as ``python -m benchmark.perf --child KIND`` too, so
this file is what both the user's command and every child run; it only calls
:func:`benchmark.perf.cli.main` and exits with its status.
"""

from __future__ import annotations

import sys

from benchmark.perf.cli import main

if __name__ == "__main__":
    sys.exit(main())
