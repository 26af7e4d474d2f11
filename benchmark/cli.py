"""``gembench``: one CLI that composes registered pieces (data sets, tracks, methods).

Imports are lazy: ``gembench --help`` must not pay for pandas, torch or RecBole.
Every user-facing error is printed as one line and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli_common import Quiet, TrustCode, guard

app = typer.Typer(
    help="gembench: benchmark generative-image personalization (ImageGem and related data).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build, import and inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
# sub-commands that live in their own modules (each imports only typer at load time)
from benchmark.cli_download import download as _data_download  # noqa: E402
from benchmark.cli_download import images as _data_images  # noqa: E402

data_app.command("download")(_data_download)
data_app.command("images")(_data_images)
from benchmark.cli_loras import edit_app, loras_app  # noqa: E402

app.add_typer(loras_app, name="loras")
app.add_typer(edit_app, name="edit")


Engine = Annotated[str, typer.Option(
    help="local (this process) or ray (a Ray cluster; see docs/ray.md).")]
Address = Annotated[str | None, typer.Option(
    help="ray: cluster address (auto or host:port); default: start a local Ray.")]
Metrics = Annotated[str | None, typer.Option(
    help="Comma-separated metrics <name>@<k> (e.g. recall@100,ndcg@100; names: recall, "
         "ndcg, hit, mrr, precision, map; k up to the track's max K, 100) instead of each "
         "track's defaults; the engine's top-K is the largest k.")]


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: str | None, seed: int) -> list[int] | None:
    """``--seeds 0,1,2`` as ints (None without it); refused together with ``--seed N``."""
    if value is None:
        return None
    if seed != 0:
        raise ValueError("give either --seed or --seeds, not both")
    from benchmark.run.plan import check_seeds

    return check_seeds([v.strip() for v in value.split(",")])



@app.command()
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

        names = _csv(methods) or []
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
                    dataset=dataset, tracks=_csv(tracks), methods=names or None,
                    first_stage=first_stage, n_candidates=n_candidates, top_n=top_n,
                    max_users=max_users, seed=s, data_dir=data_dir, results_dir=results_dir,
                    leaderboard_dir=leaderboard_dir, method_params=params, images=images,
                    progress=not quiet, echo=typer.echo, candidates=candidates)
                n_records += len(result["records"])
            typer.echo(f"{n_records} rerank records written under {results_dir}/")
            return
        result = api.run(
            engine=engine, address=address, device=device, dataset=dataset,
            tracks=_csv(tracks),
            methods=names or None, protocol=protocol,
            seed=seed, seeds=seed_list, data_dir=data_dir, results_dir=results_dir,
            leaderboard_dir=leaderboard_dir, memory_budget_mb=memory_budget_mb,
            progress=not quiet, echo=typer.echo, metrics=_csv(metrics),
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


@app.command()
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
                          metrics=_csv(metrics))
        typer.echo(json.dumps({k: result[k] for k in
                               ("method", "track", "params", "metric", "value",
                                "default_value", "n_trials", "track_fingerprint", "path")},
                              indent=2))

    guard(body)


@data_app.command("synth")
def data_synth(
    scale: Annotated[str, typer.Option(help="tiny, small or full.")] = "small",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("data/synthetic-small"),
    seed: Annotated[int, typer.Option(help="Seed: same seed, byte-identical files.")] = 0,
    quiet: Quiet = False,
) -> None:
    """Build the seeded synthetic world (users, LoRAs, images, interactions, truth)."""

    def body() -> None:
        from benchmark import api

        ds = api.synth(scale, out, seed=seed, progress=not quiet)
        typer.echo(json.dumps(api.info(ds.path), indent=2))

    guard(body)


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(
        help="imagegem, recbole, pamela or learn-user-pref.")],
    src: Annotated[Path, typer.Argument(help="Folder with the source files.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    primary_only: Annotated[bool, typer.Option(help="imagegem: primary model files only.")]
    = False,
    base_model: Annotated[str | None, typer.Option(
        help="imagegem: comma-separated baseModel values to keep.")] = None,
    exclude_own_loras: Annotated[bool, typer.Option(
        help="imagegem: drop generate rows of a user's own LoRAs.")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="learn-user-pref: unpickle the release's pickled pandas files "
        "once (this runs code from them: trusted files only); later imports read parquet.")]
    = False,
    rating_scale: Annotated[str | None, typer.Option(
        help="pamela: 'lo,hi' rating range to enforce.")] = None,
    quiet: Quiet = False,
) -> None:
    """Convert a real data source (ImageGem, RecBole, PAMELA, learn-user-pref) into the schema."""

    def body() -> None:
        from benchmark import api

        options: dict = {}
        if source == "imagegem":
            options = {"primary_only": primary_only, "base_models": _csv(base_model),
                       "exclude_own_loras": exclude_own_loras}
        elif source == "learn-user-pref":
            options = {"allow_pickle": allow_pickle}
        elif source == "pamela" and rating_scale:
            try:
                lo, hi = (float(x) for x in rating_scale.split(","))
            except ValueError:
                raise ValueError(f"--rating-scale must be 'lo,hi', got {rating_scale!r}") from None
            options = {"rating_scale": (lo, hi)}
        ds = api.import_data(source, src, out, progress=not quiet, **options)
        typer.echo(json.dumps(api.info(ds.path), indent=2))

    guard(body)


@data_app.command("info")
def data_info(path: Annotated[Path, typer.Argument(help="A data set folder.")]) -> None:
    """Show what a data set folder holds (tables, rows, embeddings, truth)."""

    def body() -> None:
        from benchmark import api

        typer.echo(json.dumps(api.info(path), indent=2))

    guard(body)


@app.command()
def split(
    dataset: Annotated[Path, typer.Option(help="A data set folder.")],
    protocol: Annotated[str, typer.Option(
        help="leave-last-out, temporal, random or cold-start.")] = "leave-last-out",
    out: Annotated[Path, typer.Option(help="Output split folder.")] = Path("split"),
    tracks: Annotated[str, typer.Option(
        help="Comma-separated tracks: lora-rec, image-rec, preference.")] = "lora-rec,image-rec",
    test_ratio: Annotated[float, typer.Option(help="temporal/random: per-user test share.")]
    = 0.2,
    valid_ratio: Annotated[float, typer.Option(help="temporal/random: validation share.")] = 0.1,
    cold_item_ratio: Annotated[float, typer.Option(help="cold-start: share of items held out.")]
    = 0.1,
    min_history: Annotated[int, typer.Option(help="Users with fewer interactions are dropped.")]
    = 3,
    valid: Annotated[bool, typer.Option(help="Make a validation part.")] = True,
    seed: Annotated[int, typer.Option(help="Seed (random and cold-start).")] = 0,
    quiet: Quiet = False,
) -> None:
    """Split a data set and save train/valid/test parquet files with a fingerprint."""

    def body() -> None:
        from benchmark import api

        result = api.split(
            dataset, protocol, out, tracks=_csv(tracks), test_ratio=test_ratio,
            valid_ratio=valid_ratio, cold_item_ratio=cold_item_ratio, min_history=min_history,
            valid=valid, seed=seed, progress=not quiet,
        )
        typer.echo(json.dumps({k: result.meta[k] for k in
                               ("protocol", "counts", "tracks", "fingerprint")}, indent=2))

    guard(body)


@app.command()
def evaluate(
    track: Annotated[str, typer.Option(help="lora-rec or image-rec.")],
    split: Annotated[Path, typer.Option(help="A split folder.")],
    submission: Annotated[Path, typer.Option(help="CSV or parquet: user_id,item_id,rank.")],
    out: Annotated[Path | None, typer.Option(help="Write the result JSON here.")] = None,
    record: Annotated[bool, typer.Option(
        help="Also write a result record (needs --name) for the leaderboards.")] = False,
    name: Annotated[str | None, typer.Option(help="Method name of the record.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where the record is written.")]
    = Path("results"),
    metrics: Metrics = None,
) -> None:
    """Score a rankings file against a split's test part; invalid files exit 2.

    A file ranks at most the track's max K items per user (100).
    """

    def body() -> None:
        from benchmark import api

        typer.echo(json.dumps(api.evaluate(track, split, submission, out, record=record,
                                           name=name, results_dir=results_dir,
                                           metrics=_csv(metrics)), indent=2))

    guard(body)


@app.command()
def validate(
    submission: Annotated[Path, typer.Argument(help="CSV or parquet: user_id,item_id,rank.")],
    track: Annotated[str, typer.Option(help="lora-rec or image-rec.")],
    split: Annotated[Path, typer.Option(help="A split folder.")],
) -> None:
    """Check a rankings file against every rule; list each violated rule with its rows.

    Exit 0 when valid, 2 when any rule is violated.
    """

    def body() -> None:
        from benchmark import api

        report = api.validate(track, split, submission)
        typer.echo(report["text"])
        if not report["valid"]:
            raise typer.Exit(2)

    guard(body)


@app.command()
def leaderboard(
    results_dir: Annotated[Path, typer.Option(help="Result records.")] = Path("results"),
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("leaderboards"),
    format: Annotated[str, typer.Option(
        help="files (Markdown + JSON + index.html under --out) or latex (print only).")]
    = "files",
    track: Annotated[str | None, typer.Option(
        help="latex: the track; files: the track whose tables take --metrics (default: "
             "lora-rec and image-rec).")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="Comma-separated columns, e.g. recall@100,ndcg@100 (cut-offs up to the track's "
             "max K): of the full-ranking tables (files) or of the LaTeX table.")] = None,
    dataset: Annotated[str | None, typer.Option(help="latex: only this data set.")] = None,
    protocol: Annotated[str | None, typer.Option(help="latex: only this protocol.")] = None,
    intervals: Annotated[bool, typer.Option(
        "--intervals", help="latex: 95% intervals in brackets.")] = False,
    pm: Annotated[bool, typer.Option(
        "--pm", help="latex: ± half-width of the 95% interval (the default).")] = False,
    seeds: Annotated[bool, typer.Option(
        "--seeds", help="latex: the mean ± sd over seeds table (needs runs of 2+ seeds; "
                        "--metrics optional).")] = False,
) -> None:
    """Rebuild every leaderboard from the result records alone (or print a LaTeX table)."""

    def body() -> None:
        from benchmark import api
        from benchmark.leaderboard import seeds_to_markdown, to_markdown

        if format == "latex":
            if intervals and pm:
                raise ValueError("choose one of --intervals and --pm")
            latex = api.leaderboard(results_dir, out, format="latex", track=track,
                                    metrics=_csv(metrics), dataset=dataset,
                                    protocol=protocol, style="intervals" if intervals else "pm",
                                    seeds=seeds)
            typer.echo(latex["text"], nl=False)
            for note in latex["notes"]:
                typer.echo(f"note: {note}", err=True)
            return
        result = api.leaderboard(results_dir, out, format=format, track=track,
                                 metrics=_csv(metrics))
        for table in result["tables"]:
            typer.echo(to_markdown(table))
        for table in result["seed_tables"]:
            typer.echo(seeds_to_markdown(table))
        for note in result["notes"]:
            typer.echo(f"note: {note}")

    guard(body)


@app.command()
def embed(
    encoder: Annotated[str, typer.Option(
        help="open_clip:<arch>:<pretrained> (e.g. open_clip:ViT-B-32:openai) or "
             "hf:<model id or local folder> (CLIP / SigLIP).")],
    out: Annotated[Path, typer.Option(help="Store (or data set) folder; writes "
                                           "embeddings/<encoder>/<kind>.npy + .ids.parquet.")],
    images: Annotated[Path | None, typer.Option(
        help="A folder of images, or a table (.parquet/.csv) with an id and a path column."
    )] = None,
    texts: Annotated[Path | None, typer.Option(help="A table of texts (prompts, tags).")] = None,
    text_column: Annotated[str, typer.Option(help="Column of --texts to embed.")] = "prompt",
    id_column: Annotated[str | None, typer.Option(
        help="Id column (default: image_id / lora_id / id, else the row number).")] = None,
    path_column: Annotated[str, typer.Option(help="Image path column of an --images table.")]
    = "path",
    kind: Annotated[str | None, typer.Option(
        help="Store kind (default: images or texts), e.g. loras.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Encoder folder name (default: from --encoder).")] = None,
    batch_size: Annotated[int, typer.Option(help="Items per batch.")] = 64,
    device: Annotated[str | None, typer.Option(help="cpu / cuda (default: cuda if any).")]
    = None,
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
    workers: Annotated[int | None, typer.Option(
        help="ray: encoder actors (default 2); local: image-reading threads (default 4).")]
    = None,
    gpus_per_worker: Annotated[float | None, typer.Option(
        help="ray: GPUs per actor (default: 1 where the cluster has GPUs, else 0).")] = None,
) -> None:
    """Compute L2-normalised embeddings of images or texts into a store; resumes after an
    interruption (finished batches are not recomputed)."""

    def body() -> None:
        from benchmark import api

        res = api.embed(encoder, out, images=images, texts=texts, text_column=text_column,
                        id_column=id_column, path_column=path_column, kind=kind, name=name,
                        batch_size=batch_size, device=device, progress=not quiet,
                        engine=engine, address=address,
                        **({"workers": workers} if workers is not None else {}),
                        **({"gpus_per_worker": gpus_per_worker}
                           if gpus_per_worker is not None else {}))
        typer.echo(f"{res['rows']} {res['kind']} embeddings (d={res['dim']}) in {res['path']}"
                   f"; {res['missing_count']} unreadable, listed in {res['kind']}.json")

    guard(body)


judge_app = typer.Typer(help="Fit, save and apply preference judges (for the lora-edit track).",
                        no_args_is_help=True)
app.add_typer(judge_app, name="judge")


@judge_app.command("fit")
def judge_fit(
    method: Annotated[str, typer.Option(help="A preference method (e.g. user-embedding).")],
    out: Annotated[Path, typer.Option(help="Judge folder to write.")],
    dataset: Annotated[str, typer.Option(help="Registered data set name or a data set folder.")]
    = "synthetic-small",
    k: Annotated[str, typer.Option(help="Judgements of held-out users the judge sees.")]
    = "all",
    seed: Annotated[int, typer.Option(help="Seed of data, split and method.")] = 0,
    data_dir: Annotated[Path, typer.Option(help="Where built data sets and splits live.")]
    = Path("data"),
) -> None:
    """Fit a preference method on the preference split's training pairs and save it."""

    def body() -> None:
        from benchmark import api

        out_dir, metrics = api.fit_judge(method, out, dataset=dataset, k=k, seed=seed,
                                         data_dir=data_dir)
        typer.echo(f"judge {method} written to {out_dir}; test accuracy "
                   f"{metrics['accuracy']:.4f}, held-out users "
                   f"{metrics.get('accuracy_unseen', float('nan')):.4f}")

    guard(body)


@judge_app.command("score")
def judge_score(
    judge: Annotated[Path, typer.Argument(help="A judge folder (gembench judge fit).")],
    pairs: Annotated[Path, typer.Option(
        help="Parquet/CSV with user_id, image_a, image_b (pairs) or user_id, image_id.")],
    out: Annotated[Path | None, typer.Option(help="Write the scores here (parquet/csv).")]
    = None,
    dataset_path: Annotated[Path | None, typer.Option(
        help="Where the judge's data set lives now (if moved).")] = None,
    trust_code: TrustCode = False,
) -> None:
    """Score pairs (d = s(u,a) - s(u,b), p(a)) or (user, image) utilities with a saved judge."""

    def body() -> None:
        from benchmark import api

        scored = api.score_with_judge(judge, pairs, out=out, dataset_path=dataset_path,
                                      trust_code=trust_code)
        typer.echo(scored.head(20).to_string(index=False))
        if out is not None:
            typer.echo(f"{len(scored)} rows written to {out}")

    guard(body)


@app.command("list")
def list_registered() -> None:
    """List registered data sets, data sources, tracks and methods."""
    from benchmark import api

    for group, entries in api.registered().items():
        typer.echo(f"{group}:")
        for name, summary in entries.items():
            typer.echo(f"  {name:18s} {summary}")


def main() -> None:
    app(prog_name="gembench")


if __name__ == "__main__":
    sys.exit(main())
