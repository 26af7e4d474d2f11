"""Download the ImageGem release (two Hugging Face dataset repos) with checksums.

``download_imagegem(out)`` fetches the table files of
``MAPS-research/ImageGem-images`` and ``MAPS-research/ImageGem-models`` into::

    out/raw/ImageGem-images/<path in repo>     e.g. data/train-00000-of-00012.parquet
    out/raw/ImageGem-models/<path in repo>
    out/DATACARD.json                          revisions, commits, bytes + sha256 per file
    out/DATACARD.md                            the same, as a table for people

``out/raw`` is a source folder that :func:`benchmark.data.imagegem.import_imagegem`
reads as it is (one folder per table).

Why it is built this way:

- **Pinned**: each requested revision (a branch, tag or commit) is resolved once to
  a commit hash and every file is fetched *at that commit*, so a download is one
  consistent snapshot even if the repo changes mid-way. A re-run with the same
  requested revision reuses the commit recorded in the data card.
- **Checked**: the Hub lists, per file, its size and either the LFS sha256 (large
  files: the object id *is* the sha256 of the bytes) or the git blob id (sha1 of
  ``b"blob <size>\\0" + bytes``). Every file is verified against that listing
  after download; a mismatch is an error, never a silent bad copy.
- **Resumable**: a file already on disk with the listed size and checksum is
  skipped without a request; the data card is rewritten (atomically) after every
  file, so an interrupted run loses at most the file in flight. huggingface_hub
  2.x downloads a file into a process-unique temporary name and renames it when
  complete, so a half-downloaded file never looks complete; an interrupted file
  restarts from byte 0.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.core.io import atomic_write_text, sha256_file
from benchmark.errors import DataError

#: repo id -> requested revision. No commit hash of the release could be looked up
#: when this was written (no network), so the pin is the branch ``main``; the commit
#: it resolves to is recorded in DATACARD.json on the first download and reused by
#: every resumed run. Replace "main" by that commit hash to pin for everyone.
PINNED_REVISIONS: dict[str, str] = {
    "MAPS-research/ImageGem-images": "main",
    "MAPS-research/ImageGem-models": "main",
}
#: files fetched by default: the tables and the repos' own dataset cards
DEFAULT_PATTERNS: tuple[str, ...] = ("*.parquet", "*.csv", "README.md")
DATACARD_JSON = "DATACARD.json"
DATACARD_MD = "DATACARD.md"
RAW = "raw"


class DownloadError(DataError):
    """A network or Hub failure; re-running the same command resumes."""


def git_blob_sha1(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Git's object id of a file: ``sha1(b"blob " + str(size) + b"\\0" + bytes)``.

    The Hub lists this id for files not stored through LFS (e.g. README.md).
    """
    size = os.path.getsize(path)
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_imagegem(
    out: str | os.PathLike,
    revision: dict[str, str] | str | None = None,
    allow_patterns: Sequence[str] = DEFAULT_PATTERNS,
    endpoint: str | None = None,
    token: str | bool | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Download both ImageGem repos into ``out/raw/<repo name>/`` and write the data card.

    ``revision``: ``None`` -> :data:`PINNED_REVISIONS`; a string -> the same revision
    for both repos; a dict -> per repo id (missing repos fall back to the pin).
    ``allow_patterns``: shell patterns matched against the path in the repo and
    against its base name. ``endpoint``: Hub URL (default: ``HF_ENDPOINT`` or
    huggingface.co); tests point it at a local server.

    Returns the manifest that is also written to ``out/DATACARD.json``.
    """
    out = Path(out)
    revisions = dict(PINNED_REVISIONS)
    if isinstance(revision, str):
        revisions = {repo: revision for repo in revisions}
    elif revision is not None:
        unknown = sorted(set(revision) - set(revisions))
        if unknown:
            raise DataError(f"unknown repo(s) {unknown}; expected {sorted(revisions)}",
                            rule="revision keys are the two ImageGem repo ids")
        revisions.update(revision)
    previous = _read_card(out)
    manifest: dict[str, Any] = {
        "source": "imagegem",
        "endpoint": endpoint or _default_endpoint(),
        "allow_patterns": list(allow_patterns),
        "repos": {},
    }
    for repo_id, requested in revisions.items():
        old = previous.get("repos", {}).get(repo_id, {})
        manifest["repos"][repo_id] = _download_repo(
            repo_id, requested, out, allow_patterns, endpoint, token, progress, old, manifest,
        )
    manifest["complete"] = True
    _write_card(out, manifest)
    return manifest


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _download_repo(
    repo_id: str,
    requested: str,
    out: Path,
    allow_patterns: Sequence[str],
    endpoint: str | None,
    token: str | bool | None,
    progress: bool,
    old: dict[str, Any],
    manifest: dict[str, Any],
) -> dict[str, Any]:
    from huggingface_hub import HfApi, hf_hub_download

    from benchmark.progress import progress_bar

    # a resumed run keeps the commit of the first run: one snapshot, never a mix
    commit = old.get("commit") if old.get("requested_revision") == requested else None
    api = HfApi(endpoint=endpoint, token=token)
    try:
        info = api.dataset_info(repo_id, revision=commit or requested, files_metadata=True)
    except Exception as e:  # noqa: BLE001 - every Hub/network failure becomes one message
        raise _network_error(repo_id, None, commit or requested, e) from None
    commit = info.sha or commit or requested
    folder = out / RAW / repo_id.split("/")[-1]
    files = [s for s in (info.siblings or []) if _allowed(s.rfilename, allow_patterns)]
    entry: dict[str, Any] = {"requested_revision": requested, "commit": commit,
                             "folder": str(folder.relative_to(out)), "files": {}}
    manifest["repos"][repo_id] = entry
    manifest["complete"] = False
    with progress_bar(total=len(files), desc=repo_id, unit="file", enabled=progress) as bar:
        for sib in sorted(files, key=lambda s: s.rfilename):
            dest = folder / sib.rfilename
            expect_sha256 = sib.lfs.sha256 if sib.lfs is not None else None
            expect_size = sib.lfs.size if sib.lfs is not None else sib.size
            status = "present"
            if not _matches(dest, expect_size, expect_sha256, sib.blob_id):
                status = "downloaded"
                dest.unlink(missing_ok=True)
                try:
                    hf_hub_download(
                        repo_id, sib.rfilename, repo_type="dataset", revision=commit,
                        local_dir=folder, cache_dir=out / ".hf-cache", endpoint=endpoint,
                        token=token,
                    )
                except Exception as e:  # noqa: BLE001
                    raise _network_error(repo_id, sib.rfilename, commit, e) from None
                if not _matches(dest, expect_size, expect_sha256, sib.blob_id):
                    got = dest.stat().st_size if dest.exists() else None
                    dest.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{repo_id}/{sib.rfilename}@{commit}: downloaded bytes do not match the "
                        f"Hub listing (size {got} vs {expect_size}); the file was removed, "
                        "re-run to fetch it again",
                        path=str(dest), rule="checksum")
            entry["files"][sib.rfilename] = {
                "bytes": dest.stat().st_size,
                "sha256": expect_sha256 or sha256_file(dest),
                "git_blob_id": sib.blob_id,
                "lfs": sib.lfs is not None,
                "status": status,
            }
            _write_card(out, manifest)
            bar.update(1)
    return entry


def _allowed(path: str, patterns: Sequence[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _matches(path: Path, size: int | None, sha256: str | None, blob_id: str | None) -> bool:
    """True when ``path`` exists with the listed size and checksum (sha256, else git id)."""
    if not path.is_file() or (size is not None and path.stat().st_size != size):
        return False
    if sha256 is not None:
        return sha256_file(path) == sha256
    if blob_id is not None:
        return git_blob_sha1(path) == blob_id
    return size is not None


def _network_error(repo_id: str, filename: str | None, revision: str,
                   e: Exception) -> DownloadError:
    what = f"{repo_id}/{filename}" if filename else f"listing of {repo_id}"
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return DownloadError(
        f"download of {what} at revision {revision} failed ({type(e).__name__}: {reason}); "
        "re-run the same command: complete files are kept and the download resumes",
        path=f"hf://datasets/{repo_id}" + (f"/{filename}" if filename else ""),
        rule="network")


# data card ---------------------------------------------------------------------
def _read_card(out: Path) -> dict[str, Any]:
    path = out / DATACARD_JSON
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg} at line {e.lineno}); delete it to start over",
                        path=str(path), rule="data card") from None


def _write_card(out: Path, manifest: dict[str, Any]) -> None:
    manifest["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_text(out / DATACARD_JSON, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / DATACARD_MD, render_card(manifest))


def render_card(manifest: dict[str, Any]) -> str:
    """The data card as Markdown: what was fetched, from where, at which commit."""
    lines = [
        "# ImageGem release, as downloaded",
        "",
        f"Endpoint: {manifest.get('endpoint')}  ",
        f"Patterns: {', '.join(manifest.get('allow_patterns', []))}  ",
        f"Complete: {'yes' if manifest.get('complete') else 'no (re-run to resume)'}",
        "",
        "Licence: not checked here; read both repos' dataset cards (README.md) before "
        "redistributing anything derived from them. Image URLs point at files owned by "
        "their creators.",
        "",
    ]
    for repo_id, entry in manifest.get("repos", {}).items():
        pinned = entry["requested_revision"]
        note = (" (a branch, not a commit: pin the commit below to reproduce this download)"
                if pinned == "main" else "")
        lines += [
            f"## {repo_id}",
            "",
            f"Requested revision: `{pinned}`{note}  ",
            f"Commit: `{entry['commit']}`  ",
            f"Folder: `{entry['folder']}`",
            "",
            "| file | bytes | sha256 |",
            "| --- | ---: | --- |",
        ]
        lines += [f"| `{name}` | {f['bytes']} | `{f['sha256']}` |"
                  for name, f in sorted(entry["files"].items())]
        lines.append("")
    return "\n".join(lines)
