"""``gembench run`` and ``gembench tune``: the commands that fit and evaluate methods.

``run`` runs methods on tracks end to end (or re-runs a record, or the rerank protocol);
``tune`` random-searches a method's hyper-parameters. Both hand the work to
:mod:`benchmark.api`, imported only when a command runs.
The command functions are plain: :mod:`benchmark.cli` registers them on the app, in the
order of ``gembench --help``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.common import Address, Engine, Metrics, Quiet, TrustCode, csv_list, guard


def _seeds(value: str | None, seed: int) -> list[int] | None:
    """``--seeds 0,1,2`` as ints (None without it); refused together with ``--seed N``."""
    if value is None:
        return None
    if seed != 0:
        raise ValueError("give either --seed or --seeds, not both")
    from benchmark.run.plan import check_seeds

    return check_seeds([v.strip() for v in value.split(",")])


def run(
    dataset: Annotated[str, typer.Option(help="Registered data set name or a data set folder.")]
    = "synthetic-small",
    tracks: Annotated[str, typer.Option(
        help="Comma-separated tracks: lora-rec, image-rec, preference.")] = "lora-rec,image-rec",
    methods: Annotated[str | None, typer.Option(
        help="Comma-separated method names or package.module:Class (default: all registered)."
    )] = None,
    method: Annotated[str | None, typer.Option(
        help="One method (name or package.module:Class); added to --methods."
    )] = None,
    protocol: Annotated[str, typer.Option(help="Split protocol.")] = "leave-last-out",
    seed: Annotated[int, typer.Option(help="Seed of data, split and methods.")] = 0,
    seeds: Annotated[str | None, typer.Option(
        help="Comma-separated seeds (e.g. 0,1,2) instead of --seed: the whole run once per "
             "seed (with --engine ray: all seeds' tasks at once); one table per seed "
             "(protocol <protocol>-seed<s>) plus a mean ± sd table over seeds.")] = None,
    data_dir: Annotated[Path, typer.Option(help="Where built data sets and splits live.")]
    = Path("data"),
    results_dir: Annotated[Path, typer.Option(help="Where result records are written.")]
    = Path("results"),
    leaderboard_dir: Annotated[Path, typer.Option(help="Where leaderboards are written.")]
    = Path("leaderboards"),
    memory_budget_mb: Annotated[float, typer.Option(help="Score-matrix budget per user chunk.")]
    = 512.0,
    quiet: Quiet = False,
    reproduce: Annotated[Path | None, typer.Option(
        help="Re-run this RECORD.json into a temporary results folder and compare its "
             "metrics (1e-9); exit 0 when they match, 1 otherwise.")] = None,
    first_stage: Annotated[str, typer.Option(
        help="rerank protocol: the first-stage method whose top-N is reranked.")] = "itemknn",
    n_candidates: Annotated[int, typer.Option(
        help="rerank protocol: candidates per user (the list length N).")] = 10,
    candidates: Annotated[str, typer.Option(
        help="rerank protocol: top (the first stage's own top-N) or inserted (ImageGem's: "
             "the held-out positive inserted among first-stage negatives; biased, see "
             "docs/rerank.md).")] = "top",
    top_n: Annotated[int, typer.Option(
        help="rerank protocol, inserted: the first-stage top-N negatives come from.")] = 50,
    max_users: Annotated[int | None, typer.Option(
        help="rerank protocol: a seeded subset of test users.")] = None,
    images: Annotated[Path | None, typer.Option(
        help="rerank protocol: image folder or id,path table (vlm-rerank).")] = None,
    param: Annotated[list[str] | None, typer.Option(
        help="rerank protocol: method parameter KEY=VALUE (JSON value; repeatable).")] = None,
    engine: Engine = "local",
    address: Address = None,
    device: Annotated[str, typer.Option(
        help="Where the ranking engine runs: auto (cuda if torch sees a GPU, else the numpy "
             "engine), cpu or cuda[:N]; --memory-budget-mb is then the GPU's score budget.")]
    = "auto",
    metrics: Metrics = None,
    trust_code: TrustCode = False,
) -> None:
    """Run methods on tracks: build data, split, evaluate, write records and leaderboards.

    Tracks: lora-rec, image-rec (ranking), preference (pairs, every k of the few-shot
    curve). ``--protocol rerank`` reorders a first stage's short candidate lists instead.
    """

    def body() -> None:
        if reproduce is not None:
            from benchmark import api

            outcome = api.reproduce(reproduce, data_dir=data_dir, progress=not quiet,
                                    trust_code=trust_code)
            if outcome["match"]:
                typer.echo(f"{reproduce}: reproduced (metrics match to 1e-9); "
                           f"re-run record {outcome['rerun']}")
                return
            typer.echo(f"{reproduce}: NOT reproduced; re-run record {outcome['rerun']}")
            for line in outcome["differences"][:20]:
                typer.echo(f"  {line}")
            raise typer.Exit(1)
        from benchmark import api
        from benchmark.leaderboard import to_markdown

        names = csv_list(methods) or []
        if method:
            names.append(method)
        seed_list = _seeds(seeds, seed)
        if protocol == "rerank":
            from benchmark.run.benchmark import run_rerank

            if metrics:
                raise ValueError("--metrics does not apply to --protocol rerank (its short "
                                 "lists are scored at Recall@5 / NDCG@5; docs/rerank.md)")

            params = {}
            for item in param or []:
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"--param must be KEY=VALUE, got {item!r}")
                try:
                    params[key] = json.loads(value)
                except json.JSONDecodeError:
                    params[key] = value
            n_records = 0
            for s in seed_list or [seed]:
                result = run_rerank(
                    dataset=dataset, tracks=csv_list(tracks), methods=names or None,
                    first_stage=first_stage, n_candidates=n_candidates, top_n=top_n,
                    max_users=max_users, seed=s, data_dir=data_dir, results_dir=results_dir,
                    leaderboard_dir=leaderboard_dir, method_params=params, images=images,
                    progress=not quiet, echo=typer.echo, candidates=candidates)
                n_records += len(result["records"])
            typer.echo(f"{n_records} rerank records written under {results_dir}/")
            return
        result = api.run(
            engine=engine, address=address, device=device, dataset=dataset,
            tracks=csv_list(tracks),
            methods=names or None, protocol=protocol,
            seed=seed, seeds=seed_list, data_dir=data_dir, results_dir=results_dir,
            leaderboard_dir=leaderboard_dir, memory_budget_mb=memory_budget_mb,
            progress=not quiet, echo=typer.echo, metrics=csv_list(metrics),
        )
        typer.echo("")
        # the tables this run wrote into: results/<dataset>/<protocol>/<track>/<method>.json
        touched = {(Path(p).parts[-4], Path(p).parts[-3], Path(p).parts[-2])
                   for p in result["records"]}
        if len(result["seeds"]) > 1:  # the mean ± sd tables; per-seed ones are in the files
            from benchmark.leaderboard import seeds_to_markdown
            from benchmark.results import unseeded_protocol

            touched = {(d, unseeded_protocol(p), t) for d, p, t in touched}
            shown, print_table = result.get("seed_tables", []), seeds_to_markdown
        else:
            shown, print_table = result.get("tables", []), to_markdown
        for table in shown:
            if (table["dataset"], table["protocol"], table["track"]) not in touched:
                continue
            if table["track"] != "preference" or table["protocol"].endswith("-kall"):
                typer.echo(print_table(table))
        for note in result.get("notes", []):
            typer.echo(f"note: {note}")
        typer.echo(f"{len(result['records'])} records written under {results_dir}/; "
                   f"leaderboards under {leaderboard_dir}/")

    guard(body)


def tune(
    track: Annotated[str, typer.Option(help="lora-rec or image-rec.")],
    method: Annotated[str, typer.Option(help="A registered method with a search space.")],
    budget: Annotated[int | None, typer.Option(
        help="Number of trials (default: the method's own budget).")] = None,
    dataset: Annotated[str, typer.Option(help="Registered data set name or a data set folder.")]
    = "synthetic-small",
    metric: Annotated[str, typer.Option(help="Validation metric to maximise.")] = "ndcg@10",
    metrics: Annotated[str | None, typer.Option(
        help="Comma-separated metric set each trial evaluates on the valid part (stored per "
             "trial; default: the track's metrics); the objective stays --metric.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of data, split, search and methods.")] = 0,
    protocol: Annotated[str, typer.Option(help="Split protocol.")] = "leave-last-out",
    data_dir: Annotated[Path, typer.Option(help="Where built data sets and splits live.")]
    = Path("data"),
    tuned_dir: Annotated[Path | None, typer.Option(
        help="Where tuned parameters are stored (default: baselines/tuned).")] = None,
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
) -> None:
    """Random-search a method's hyper-parameters on the validation part (fit on train)."""

    def body() -> None:
        from benchmark import api

        result = api.tune(engine=engine, address=address, track=track, method=method,
                          budget=budget, dataset=dataset,
                          metric=metric, seed=seed, protocol=protocol, data_dir=data_dir,
                          tuned_dir=tuned_dir, progress=not quiet, echo=typer.echo,
                          metrics=csv_list(metrics))
        typer.echo(json.dumps({k: result[k] for k in
                               ("method", "track", "params", "metric", "value",
                                "default_value", "n_trials", "track_fingerprint", "path")},
                              indent=2))

    guard(body)
