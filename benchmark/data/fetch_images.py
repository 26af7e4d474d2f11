"""Fetch image files by URL into a content-addressed cache, reporting what is gone.

ImageGem ships image URLs, not images, and URLs on a model-sharing site disappear.
So a missing, truncated or undecodable image is counted and listed, never fatal.

Cache layout (``cache_dir``)::

    ab/cdef0123....jpg       the bytes whose sha256 is "abcdef0123...", extension from the
                             decoded format (jpg, png, webp, gif, ...)
    index.parquet            one row per image id: image_id, url, status, sha256, path
                             (relative to cache_dir), bytes, http_status, error, fetched_at
    report.json              counts by status and the ids of every failure (last run)

Identical bytes are stored once, whatever their URL or id. Both the index and the
report are written atomically; the index is also checkpointed every ``checkpoint_s``
seconds (a time, not a count: rewriting a 5M-row index every N images would cost
more than the downloads), so an interrupted run resumes where it stopped.

Statuses (each id gets exactly one per run):

- ``ok``: fetched in this run and decoded fully;
- ``cached``: already ``ok`` in the index with the same URL and the file present:
  no request is made;
- ``not_found``: HTTP 404 or 410 (not retried);
- ``truncated``: recognised as an image but the data ends early or is corrupt
  (PIL ``verify()`` or a full ``load()`` fails), or the body was shorter than its
  Content-Length on every attempt;
- ``undecodable``: bytes PIL does not recognise as an image (an HTML error page...);
- ``error``: anything else after ``retries`` retries (5xx, 429, timeouts, connection
  errors, other 4xx, a bad URL);
- ``no_url``: the row has no URL.

``not_found``, ``truncated`` and ``undecodable`` are permanent: a re-run keeps them
without a request (``retry_failed=True`` asks again). ``error`` ids are retried on
every run. Retries wait ``backoff * 2**attempt`` seconds (exponential back-off).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.io import atomic_path, atomic_write_bytes, atomic_write_text
from benchmark.errors import DataError

STATUSES: tuple[str, ...] = (
    "ok", "cached", "not_found", "truncated", "undecodable", "error", "no_url",
)
FAILED: tuple[str, ...] = ("not_found", "truncated", "undecodable", "error", "no_url")
PERMANENT: frozenset[str] = frozenset({"not_found", "truncated", "undecodable"})
INDEX_FILE = "index.parquet"
REPORT_FILE = "report.json"
INDEX_COLUMNS: tuple[str, ...] = (
    "image_id", "url", "status", "sha256", "path", "bytes", "http_status", "error", "fetched_at",
)
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "TIFF": "tif", "BMP": "bmp"}
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_GONE_STATUS = frozenset({404, 410})


@dataclass
class _Result:
    image_id: str
    url: str | None
    status: str
    sha256: str | None = None
    path: str | None = None
    bytes: int | None = None
    http_status: int | None = None
    error: str | None = None
    requests: int = 0

    def row(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "url": self.url, "status": self.status,
                "sha256": self.sha256, "path": self.path, "bytes": self.bytes,
                "http_status": self.http_status, "error": self.error,
                "fetched_at": int(time.time())}


def fetch_images(
    dataset_or_table: Any,
    cache_dir: str | os.PathLike,
    url_column: str = "url",
    id_column: str = "image_id",
    workers: int = 8,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 30.0,
    retry_failed: bool = False,
    checkpoint_s: float = 60.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch every image of ``dataset_or_table`` into ``cache_dir``; return the report.

    ``dataset_or_table``: a gembench data set (folder or :class:`Dataset`, its
    ``images`` table), a ``.parquet`` / ``.csv`` file, or a pandas DataFrame. Rows
    repeating an id (the raw release has one row per (image, LoRA)) count once,
    with the URL of the first row. At most ``workers`` requests run at once.
    """
    if workers < 1 or retries < 0 or backoff < 0 or timeout <= 0:
        raise DataError(f"workers={workers}, retries={retries}, backoff={backoff}, "
                        f"timeout={timeout}", rule="workers >= 1, retries >= 0, backoff >= 0, "
                        "timeout > 0")
    frame, source = _read_urls(dataset_or_table, url_column, id_column)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    start = time.time()
    index = _read_index(cache)

    # decide, vectorised, which ids need a request
    import pandas as pd

    merged = frame.merge(index[["image_id", "url", "status", "path"]].rename(
        columns={"url": "old_url", "status": "old_status"}), on="image_id", how="left")
    same_url = merged["old_url"].eq(merged["url"]).to_numpy(dtype=bool)
    old_status = merged["old_status"].fillna("").to_numpy(dtype=object)
    was_ok = same_url & pd.Series(old_status).eq("ok").to_numpy()
    if was_ok.any():  # the file must still be there
        paths = merged.loc[was_ok, "path"].to_numpy(dtype=object)
        present = [(cache / p).is_file() for p in paths]
        was_ok[was_ok] = present
    keep_failed = (same_url & pd.Series(old_status).isin(sorted(PERMANENT)).to_numpy()
                   & (not retry_failed))
    no_url = merged["url"].isna().to_numpy()
    todo = ~(was_ok | keep_failed | no_url)

    # results: the index rows (status ok / a failure); run_status: this run's status per id
    results: dict[str, dict[str, Any]] = {}
    run_status: dict[str, str] = {}
    by_id = index.set_index("image_id")
    kept = by_id.loc[merged.loc[was_ok | keep_failed, "image_id"]].reset_index()
    for row in kept.to_dict("records"):
        results[row["image_id"]] = row
        run_status[row["image_id"]] = "cached" if row["status"] == "ok" else row["status"]
    for image_id in merged.loc[no_url, "image_id"]:
        results[image_id] = _Result(image_id, None, "no_url").row()
        run_status[image_id] = "no_url"
    # ids of the index not asked for this time stay in the index, out of the report
    others = index[~index["image_id"].isin(frame["image_id"])]

    jobs = merged.loc[todo, ["image_id", "url"]].itertuples(index=False, name=None)
    n_requests = 0
    n_bytes = 0
    last_checkpoint = time.monotonic()
    try:
        for res in _run_pool(list(jobs), cache, workers, retries, backoff, timeout, progress):
            results[res.image_id] = res.row()
            run_status[res.image_id] = res.status
            n_requests += res.requests
            if res.status == "ok":
                n_bytes += res.bytes or 0
            if time.monotonic() - last_checkpoint >= checkpoint_s:
                _write_index(cache, others, results)
                last_checkpoint = time.monotonic()
    finally:
        _write_index(cache, others, results)

    statuses = pd.Series(frame["image_id"].map(run_status).to_numpy(), index=frame["image_id"])
    counts = {s: int(n) for s, n in statuses.value_counts().reindex(STATUSES, fill_value=0)
              .items()}
    failed = {s: sorted(statuses.index[statuses.eq(s).to_numpy()]) for s in FAILED}
    report = {
        "source": source,
        "cache": str(cache),
        "total": int(len(frame)),
        "counts": counts,
        "failed": failed,
        "requests": n_requests,
        "bytes_downloaded": n_bytes,
        "wall_s": round(time.time() - start, 3),
    }
    atomic_write_text(cache / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


# input -------------------------------------------------------------------------
def _read_urls(obj: Any, url_column: str, id_column: str) -> tuple[Any, str]:
    """(DataFrame[image_id, url] with unique string ids, a name for the source)."""
    import pandas as pd

    from benchmark.data.store import Dataset

    columns = [id_column, url_column]
    if isinstance(obj, pd.DataFrame):
        frame, source = obj, "<DataFrame>"
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"missing column(s) {missing}; columns are {list(frame.columns)}",
                            path=source, rule="url and id columns")
        frame = frame[columns]
    else:
        if not isinstance(obj, Dataset):
            path = Path(obj)
            if path.is_dir():
                from benchmark.data.store import load_dataset

                obj = load_dataset(path)
            elif not path.is_file():
                raise DataError("no such file or folder", path=str(path),
                                rule="a data set folder, a .parquet or a .csv table")
        if isinstance(obj, Dataset):
            source = str(obj.path / "images.parquet")
            frame = _read_columns(obj.path / "images.parquet", columns)
        else:
            source = str(path)
            frame = _read_columns(path, columns)
    frame = frame.rename(columns={id_column: "image_id", url_column: "url"})
    ids = frame["image_id"]
    if ids.isna().any():
        row = int(ids.isna().to_numpy().argmax()) + 1
        raise DataError(f"null {id_column}", path=source, row=row, rule="every row has an id")
    frame = frame.assign(image_id=ids.astype(str),
                         url=frame["url"].astype(object).where(frame["url"].notna(), None))
    frame.loc[frame["url"].astype(str).str.strip().eq(""), "url"] = None
    frame = frame.drop_duplicates("image_id", keep="first").reset_index(drop=True)
    return frame, source


def _read_columns(path: Path, columns: list[str]) -> Any:
    import pandas as pd
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
    elif path.suffix == ".csv":
        names = list(pd.read_csv(path, nrows=0).columns)
    else:
        raise DataError("unsupported file type", path=str(path),
                        rule="a data set folder, a .parquet or a .csv table")
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"missing column(s) {missing}; columns are {names}", path=str(path),
                        rule="url and id columns (see --url-column / --id-column)")
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=columns).to_pandas()
    return pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False,
                       na_values=[""])


# index -------------------------------------------------------------------------
def _read_index(cache: Path) -> Any:
    import pandas as pd

    path = cache / INDEX_FILE
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in INDEX_COLUMNS})
    frame = pd.read_parquet(path)
    missing = [c for c in INDEX_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}", path=str(path),
                        rule="image cache index columns; delete the index to rebuild it")
    return frame[list(INDEX_COLUMNS)]


def _write_index(cache: Path, others: Any, results: dict[str, dict[str, Any]]) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pd.DataFrame.from_records(list(results.values()), columns=list(INDEX_COLUMNS))
    frame = pd.concat([others, rows], ignore_index=True) if len(others) else rows
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    schema = pa.schema([("image_id", pa.string()), ("url", pa.string()),
                        ("status", pa.string()), ("sha256", pa.string()),
                        ("path", pa.string()), ("bytes", pa.int64()),
                        ("http_status", pa.int64()), ("error", pa.string()),
                        ("fetched_at", pa.int64())])
    for c in ("bytes", "http_status", "fetched_at"):
        frame[c] = frame[c].astype("Int64")
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    with atomic_path(cache / INDEX_FILE) as tmp:
        pq.write_table(table, tmp)


# fetching ----------------------------------------------------------------------
def _run_pool(jobs: list[tuple[str, str]], cache: Path, workers: int, retries: int,
              backoff: float, timeout: float, progress: bool) -> Iterator[_Result]:
    """Results as they complete; at most ``4 * workers`` jobs are queued at once."""
    from benchmark.progress import progress_bar

    local = threading.local()

    def session() -> Any:
        if not hasattr(local, "session"):
            import requests

            local.session = requests.Session()
        return local.session

    def one(image_id: str, url: str) -> _Result:
        return _fetch_one(session(), image_id, url, cache, retries, backoff, timeout)

    window = 4 * workers
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with progress_bar(total=len(jobs), desc="images", unit="img", enabled=progress) as bar:
            pending: set[Future] = set()
            it = iter(jobs)
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < window:
                    job = next(it, None)
                    if job is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(one, *job))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    res = fut.result()
                    bar.update(1)
                    yield res
    finally:  # interrupted: drop the queued jobs, let the running ones finish
        pool.shutdown(wait=True, cancel_futures=True)


def _fetch_one(session: Any, image_id: str, url: str, cache: Path, retries: int,
               backoff: float, timeout: float) -> _Result:
    """GET with retries on transient failures, then a decode check and a cache write."""
    import requests

    res = _Result(image_id, url, "error")
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        res.requests += 1
        try:
            with session.get(url, timeout=timeout, stream=True) as r:
                res.http_status = r.status_code
                if r.status_code in _GONE_STATUS:
                    res.status, res.error = "not_found", f"HTTP {r.status_code}"
                    return res
                if r.status_code in _RETRY_STATUS:
                    res.status, res.error = "error", f"HTTP {r.status_code}"
                    continue
                if r.status_code >= 400:
                    res.status, res.error = "error", f"HTTP {r.status_code}"
                    return res
                data = r.content
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError) as e:
            res.status, res.error = "truncated", f"{type(e).__name__}: {e}"[:300]
            continue
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as e:
            res.status, res.error = "error", f"{type(e).__name__}: {e}"[:300]
            continue
        except requests.exceptions.RequestException as e:  # bad URL, too many redirects...
            res.status, res.error = "error", f"{type(e).__name__}: {e}"[:300]
            return res
        return _store(res, data, cache)
    return res


def _store(res: _Result, data: bytes, cache: Path) -> _Result:
    """Decode-check ``data``; when it is a whole image, write it under its sha256."""
    status, fmt, error = check_image(data)
    res.status, res.error, res.bytes = status, error, len(data)
    if status != "ok":
        return res
    digest = hashlib.sha256(data).hexdigest()
    ext = _EXT.get(fmt or "", (fmt or "bin").lower())
    rel = f"{digest[:2]}/{digest[2:]}.{ext}"
    dest = cache / rel
    if not dest.is_file():
        atomic_write_bytes(dest, data)
    res.sha256, res.path = digest, rel
    return res


def check_image(data: bytes) -> tuple[str, str | None, str | None]:
    """(status, PIL format, error): ``ok``, ``undecodable`` or ``truncated``.

    ``verify()`` checks the container; a full ``load()`` decodes every pixel, which is
    what catches a JPEG cut short (``verify`` alone lets many of those through).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except UnidentifiedImageError as e:
        return "undecodable", None, str(e)[:300]
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
        return "truncated", None, f"{type(e).__name__}: {e}"[:300]
    return "ok", fmt, None
