"""Performance at ImageGem scale: ``python -m benchmark.perf [--scale full] [--json OUT]``.

The command line of ``python -m benchmark.perf``: its options (including the hidden
``--child`` / ``--work`` a measuring subprocess is started with) and :func:`main`, which
either runs one child and writes its JSON or runs a section and prints its table. The
parser's description is this docstring's first line, as it was the script's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmark.perf.driver import _run_child, run, run_knn
from benchmark.perf.knn import format_knn
from benchmark.perf.report import format_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmark.perf", description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="full", choices=["full", "small", "tiny"],
                   help="full: --dataset (default /tmp/synth-full); small/tiny: synthesised")
    p.add_argument("--dataset", default=None, help="data set folder (overrides the scale's)")
    p.add_argument("--json", default=None, help="write the report as JSON here")
    p.add_argument("--memory-budget-mb", type=float, default=2048.0,
                   help="the engine's memory budget (sizes its user chunks)")
    p.add_argument("--cache", default="/tmp/gembench-perf", help="split and matrix cache")
    p.add_argument("--no-recbole", action="store_true", help="skip the RecBole measurement")
    p.add_argument("--no-scaling", action="store_true", help="skip the 1/8, 1/4, 1/2 runs")
    p.add_argument("--recbole-batch-users", type=int, default=512,
                   help="users per RecBole full-sort batch (eval_batch_size / n_items)")
    p.add_argument("--gpu", action="store_true",
                   help="measure only the GPU section (floor and gembench on CUDA)")
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    p.add_argument("--gpu-memory-budget-mb", type=float, default=16384.0,
                   help="the GPU engine's device score budget (sizes its user chunks)")
    p.add_argument("--gpu-device", default="cuda", help=argparse.SUPPRESS)  # cpu-torch: tests
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--knn", action="store_true",
                   help="measure only the neighbourhood section: itemknn / userknn fits beside "
                        "implicit's CosineRecommender on the same matrix")
    p.add_argument("--knn-matrix", default=None, help="--knn: a users x items .npz matrix")
    p.add_argument("--knn-shape", default=None,
                   help="--knn: a random USERSxITEMS matrix (e.g. 57000x242000; default: the "
                        "data set's fit matrix)")
    p.add_argument("--knn-nnz", default="4.96e6", help="--knn-shape: about this many pairs")
    p.add_argument("--knn-zipf", type=float, default=0.8, help="--knn-shape: item popularity")
    p.add_argument("--knn-threads", type=int, default=0, help="--knn: threads (0: the CPUs)")
    p.add_argument("--knn-no-userknn", dest="knn_userknn", action="store_false",
                   help="--knn: itemknn only")
    p.add_argument("--knn-check-rows", type=int, default=2000,
                   help="--knn: rows compared bit for bit with the reference path (0: none)")
    p.add_argument("--inline", action="store_true",
                   help="measure in this process, not in subprocesses (quick; peak memory "
                        "is then the whole run's)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        work = Path(args.work)
        result = _run_child(args.child, work, args)
        (work / f"{args.child}.json").write_text(json.dumps(result, indent=2, default=float))
        return 0
    echo = lambda line: print(line, flush=True)  # noqa: E731
    report = run_knn(args, echo) if args.knn else run(args, echo=echo)
    table = format_knn(report) if args.knn else format_table(report)
    report["table"] = table
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0
