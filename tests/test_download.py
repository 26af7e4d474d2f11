"""Downloading the release and its images, against local HTTP servers only (127.0.0.1).

One server plays the image host (real PNG/JPEG bytes, a 404, a truncated JPEG, a
non-image, a URL that answers 503 twice then succeeds); another emulates the few
Hugging Face Hub endpoints huggingface_hub calls to list and download a dataset repo.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from benchmark.data.download import (
    DATACARD_JSON,
    DATACARD_MD,
    DownloadError,
    download_imagegem,
    git_blob_sha1,
)
from benchmark.data.fetch_images import INDEX_FILE, REPORT_FILE, check_image, fetch_images
from benchmark.errors import DataError

SAMPLE = Path(__file__).resolve().parents[1] / "datasets" / "imagegem-sample"


# --------------------------------------------------------------------------- a tiny server
class Server:
    """ThreadingHTTPServer on 127.0.0.1:0; ``handle(method, path, headers)`` -> (code, headers,
    body). Counts requests per (method, path)."""

    def __init__(self, handle):
        self.hits: Counter = Counter()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                path = unquote(urlsplit(self.path).path)
                with outer.lock:
                    outer.hits[(method, path)] += 1
                code, headers, body = handle(method, path, self.headers)
                self.send_response(code)
                headers = {"Content-Length": str(len(body)), **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if method == "GET":
                    self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                self._serve("GET")

            def do_HEAD(self):  # noqa: N802
                self._serve("HEAD")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def total(self, prefix: str = "") -> int:
        return sum(n for (_, p), n in self.hits.items() if p.startswith(prefix))


def _image_bytes(fmt: str, color: tuple[int, int, int], size=(16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


PNG_A = _image_bytes("PNG", (255, 0, 0))
JPG_B = _image_bytes("JPEG", (0, 128, 255), size=(64, 48))
PNG_C = _image_bytes("PNG", (0, 255, 0))
PNG_FLAKY = _image_bytes("PNG", (9, 9, 9))
JPG_BIG = _image_bytes("JPEG", (200, 30, 90), size=(128, 128))
TRUNCATED = JPG_BIG[: len(JPG_BIG) // 2]
NOT_IMAGE = b"<html><body>Sorry, this image was removed</body></html>"


def image_host():
    flaky = {"n": 0}
    files = {"/i/a.png": PNG_A, "/i/b.jpg": JPG_B, "/i/c.png": PNG_C, "/i/a-copy.png": PNG_A,
             "/i/trunc.jpg": TRUNCATED, "/i/page.jpg": NOT_IMAGE}

    def handle(method, path, headers):
        if path in files:
            return 200, {"Content-Type": "image/jpeg"}, files[path]
        if path == "/i/flaky.png":
            flaky["n"] += 1
            return (503, {}, b"busy") if flaky["n"] <= 2 else (200, {}, PNG_FLAKY)
        if path == "/i/down.png":
            return 500, {}, b"down"
        if path == "/i/short.png":  # the connection closes before Content-Length bytes
            return 200, {"Content-Length": str(len(PNG_A) + 100)}, PNG_A
        return 404, {}, b"not found"

    return Server(handle)


def _table(url: str) -> pd.DataFrame:
    rows = [("a", "/i/a.png"), ("b", "/i/b.jpg"), ("c", "/i/c.png"), ("a2", "/i/a-copy.png"),
            ("gone", "/i/gone.jpg"), ("trunc", "/i/trunc.jpg"), ("page", "/i/page.jpg"),
            ("flaky", "/i/flaky.png"), ("a", "/i/ignored-duplicate-id.png")]
    return pd.DataFrame({"image_id": [r[0] for r in rows] + ["nourl"],
                         "url": [url + r[1] for r in rows] + [None]})


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# --------------------------------------------------------------------------- fetch_images
def test_fetch_images_report_cache_and_resume(tmp_path):
    cache = tmp_path / "cache"
    with image_host() as host:
        report = fetch_images(_table(host.url), cache, workers=4, retries=3, backoff=0.01,
                              timeout=5, progress=False)
        assert report["total"] == 9
        assert report["counts"] == {"ok": 5, "cached": 0, "not_found": 1, "truncated": 1,
                                    "undecodable": 1, "error": 0, "no_url": 1}
        assert report["failed"] == {"not_found": ["gone"], "truncated": ["trunc"],
                                    "undecodable": ["page"], "error": [], "no_url": ["nourl"]}
        # flaky: 503, 503, 200; a 404 is asked once; the duplicate id's second URL never
        assert host.hits[("GET", "/i/flaky.png")] == 3
        assert host.hits[("GET", "/i/gone.jpg")] == 1
        assert host.hits[("GET", "/i/ignored-duplicate-id.png")] == 0
        assert report["requests"] == host.total() == 10
        assert report["bytes_downloaded"] == (2 * len(PNG_A) + len(JPG_B) + len(PNG_C)
                                              + len(PNG_FLAKY))

        # content-addressed: a and a2 share one file; ab/cdef....ext
        files = sorted(str(p.relative_to(cache)) for p in cache.rglob("*")
                       if p.is_file() and p.parent != cache)
        expect = {_sha(PNG_A): "png", _sha(JPG_B): "jpg", _sha(PNG_C): "png",
                  _sha(PNG_FLAKY): "png"}
        assert files == sorted(f"{h[:2]}/{h[2:]}.{e}" for h, e in expect.items())
        for h in expect:
            assert _sha((cache / f"{h[:2]}/{h[2:]}.{expect[h]}").read_bytes()) == h

        index = pd.read_parquet(cache / INDEX_FILE).set_index("image_id")
        assert sorted(index.index) == ["a", "a2", "b", "c", "flaky", "gone", "nourl", "page",
                                       "trunc"]
        assert index.loc["a", "sha256"] == index.loc["a2", "sha256"] == _sha(PNG_A)
        assert index.loc["b", "path"] == f"{_sha(JPG_B)[:2]}/{_sha(JPG_B)[2:]}.jpg"
        assert index.loc["flaky", "status"] == "ok"
        assert index.loc["gone", "http_status"] == 404
        assert pd.isna(index.loc["trunc", "sha256"])
        assert json.loads((cache / REPORT_FILE).read_text()) == report

        # second run: everything known, not one request
        before = host.total()
        again = fetch_images(_table(host.url), cache, workers=4, retries=3, backoff=0.01,
                             timeout=5, progress=False)
        assert host.total() == before
        assert again["requests"] == 0
        assert again["counts"] == {"ok": 0, "cached": 5, "not_found": 1, "truncated": 1,
                                   "undecodable": 1, "error": 0, "no_url": 1}
        assert again["failed"] == report["failed"]

        # a deleted cache file is fetched again; retry_failed asks the permanent failures again
        (cache / index.loc["c", "path"]).unlink()
        third = fetch_images(_table(host.url), cache, backoff=0.01, retry_failed=True,
                             progress=False)
        assert third["counts"]["ok"] == 1 and third["counts"]["cached"] == 4
        assert host.hits[("GET", "/i/c.png")] == 2
        assert host.hits[("GET", "/i/gone.jpg")] == 2
        assert third["requests"] == 4  # c, gone, trunc, page


def test_fetch_images_errors_are_retried_with_backoff_and_not_fatal(tmp_path):
    frame = pd.DataFrame({"image_id": ["x", "y", "z"],
                          "url": ["/i/down.png", "/i/b.jpg", "/i/short.png"]})
    with image_host() as host:
        frame["url"] = host.url + frame["url"]
        frame.to_parquet(tmp_path / "t.parquet")
        report = fetch_images(tmp_path / "t.parquet", tmp_path / "c", retries=2, backoff=0.01,
                              progress=False)
        assert host.hits[("GET", "/i/down.png")] == 3  # 1 + 2 retries
        assert host.hits[("GET", "/i/short.png")] == 3
        assert report["counts"]["error"] == 1 and report["counts"]["ok"] == 1
        assert report["failed"]["error"] == ["x"] and report["failed"]["truncated"] == ["z"]
        assert pd.read_parquet(tmp_path / "c" / INDEX_FILE).set_index("image_id").loc[
            "x", "error"] == "HTTP 500"
        # an error is transient: the next run asks again (y is cached)
        report = fetch_images(tmp_path / "t.parquet", tmp_path / "c", retries=0, progress=False)
        assert host.hits[("GET", "/i/down.png")] == 4
        assert host.hits[("GET", "/i/b.jpg")] == 1
        assert report["source"] == str(tmp_path / "t.parquet")


def test_fetch_images_from_a_dataset_folder_and_bad_input(tmp_path):
    from benchmark.data.store import DatasetWriter
    from benchmark.schema import schema_of

    with image_host() as host:
        ts = pd.Series(pd.to_datetime(["2024-01-01"] * 2)).astype("datetime64[s]")
        with DatasetWriter(tmp_path / "ds", {"name": "t", "source": "test"}) as w:
            w.write_table("users", pd.DataFrame({"user_id": ["u"]}), schema_of("users"))
            w.write_table("loras", pd.DataFrame(
                {"lora_id": ["l"], "creator_id": ["u"], "base_model": ["SD 1.5"],
                 "tags": [["t"]], "created_at": ts[:1]}), schema_of("loras"))
            w.write_table("images", pd.DataFrame(
                {"image_id": ["i1", "i2"], "user_id": "u", "lora_ids": [["l"], ["l"]],
                 "prompt": "p", "created_at": ts, "url": [host.url + "/i/a.png",
                                                         host.url + "/i/gone.jpg"]}),
                schema_of("images").append(pa.field("url", pa.string())))
            w.write_table("interactions", pd.DataFrame(
                {"user_id": ["u"], "item_id": ["l"], "item_kind": ["lora"], "kind": ["generate"],
                 "timestamp": ts[:1], "weight": [1.0]}), schema_of("interactions"))
        report = fetch_images(tmp_path / "ds", tmp_path / "c", progress=False)
        assert report["counts"]["ok"] == 1 and report["failed"]["not_found"] == ["i2"]

    pd.DataFrame({"image_id": ["1"], "link": ["x"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as e:
        fetch_images(tmp_path / "t.csv", tmp_path / "c2", progress=False)
    assert e.value.path == str(tmp_path / "t.csv") and "['url']" in e.value.message
    with pytest.raises(DataError, match="row 2"):
        fetch_images(pd.DataFrame({"image_id": ["1", None], "url": ["u", "v"]}),
                     tmp_path / "c3", progress=False)


def test_check_image():
    assert check_image(PNG_A) == ("ok", "PNG", None)
    assert check_image(JPG_B)[:2] == ("ok", "JPEG")
    assert check_image(TRUNCATED)[0] == "truncated"
    assert check_image(PNG_A[:-20])[0] == "truncated"
    assert check_image(NOT_IMAGE)[0] == "undecodable"


# --------------------------------------------------------------------------- emulated Hub
COMMITS = {"MAPS-research/ImageGem-images": "a" * 40, "MAPS-research/ImageGem-models": "b" * 40}
SHARD = "data/train-00000-of-00001.parquet"


def hub(files: dict[str, dict[str, bytes]], corrupt: set[str] = frozenset()):
    """Hub endpoints: the revision API (with blobs) and HEAD/GET resolve."""

    def handle(method, path, headers):
        for repo, commit in COMMITS.items():
            if path in (f"/api/datasets/{repo}/revision/main",
                        f"/api/datasets/{repo}/revision/{commit}"):
                siblings = []
                for name, data in files[repo].items():
                    s = {"rfilename": name, "size": len(data),
                         "blobId": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                    if name.endswith(".parquet"):
                        s["lfs"] = {"sha256": _sha(data), "size": len(data), "pointerSize": 134}
                    siblings.append(s)
                body = json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode()
                return 200, {"Content-Type": "application/json"}, body
            for rev in ("main", commit):
                prefix = f"/datasets/{repo}/resolve/{rev}/"
                if path.startswith(prefix) and path[len(prefix):] in files[repo]:
                    name = path[len(prefix):]
                    data = files[repo][name]
                    etag = _sha(data) if name.endswith(".parquet") else "x"
                    if name in corrupt:
                        data = b"X" + data[1:]
                    return 200, {"ETag": f'"{etag}"', "X-Repo-Commit": commit,
                                 "Content-Type": "application/octet-stream"}, data
        return 404, {"X-Error-Code": "EntryNotFound"}, b"{}"

    return Server(handle)


def _release_files() -> dict[str, dict[str, bytes]]:
    out = {}
    for repo in COMMITS:
        name = repo.split("/")[1]
        out[repo] = {SHARD: (SAMPLE / name / SHARD).read_bytes(),
                     "README.md": f"# {name}\n".encode(), ".gitattributes": b"*.parquet lfs\n"}
    return out


def test_download_imagegem_through_an_emulated_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    files = _release_files()
    out = tmp_path / "release"
    with hub(files) as server:
        manifest = download_imagegem(out, endpoint=server.url, progress=False)
        for repo, commit in COMMITS.items():
            entry = manifest["repos"][repo]
            name = repo.split("/")[1]
            assert entry["commit"] == commit and entry["requested_revision"] == "main"
            assert sorted(entry["files"]) == ["README.md", SHARD]  # .gitattributes filtered
            data = files[repo][SHARD]
            assert (out / "raw" / name / SHARD).read_bytes() == data
            assert entry["files"][SHARD]["sha256"] == _sha(data)
            assert entry["files"][SHARD]["bytes"] == len(data)
            assert entry["files"]["README.md"]["sha256"] == _sha(f"# {name}\n".encode())
            assert entry["files"]["README.md"]["git_blob_id"] == git_blob_sha1(
                out / "raw" / name / "README.md")
            # after the listing at main, every file is fetched at the resolved commit
            assert server.hits[("GET", f"/datasets/{repo}/resolve/{commit}/{SHARD}")] == 1
            assert server.total(f"/datasets/{repo}/resolve/main/") == 0
        card = json.loads((out / DATACARD_JSON).read_text())
        assert card == manifest and card["complete"] is True
        md = (out / DATACARD_MD).read_text()
        assert _sha(files["MAPS-research/ImageGem-models"][SHARD]) in md and "a" * 40 in md

        # resumed: nothing is downloaded again; the listing is asked at the recorded commit
        resolved = server.total("/datasets/")
        again = download_imagegem(out, endpoint=server.url, progress=False)
        assert server.total("/datasets/") == resolved
        assert server.hits[("GET", f"/api/datasets/MAPS-research/ImageGem-images/revision/"
                                   f"{'a' * 40}")] == 1
        assert {f["status"] for e in again["repos"].values() for f in e["files"].values()} == {
            "present"}

        # a damaged local file is fetched again, alone
        shard = out / "raw" / "ImageGem-models" / SHARD
        shard.write_bytes(b"junk")
        download_imagegem(out, endpoint=server.url, progress=False)
        assert shard.read_bytes() == files["MAPS-research/ImageGem-models"][SHARD]
        assert server.total("/datasets/") == resolved + 2  # HEAD + GET of that shard

    # the raw folder is what the converter reads
    from benchmark.data.imagegem import import_imagegem

    ds = import_imagegem(out / "raw", tmp_path / "ds", progress=False)
    assert ds.table("images").shape[0] > 0 and "url" in ds.table("images").columns


def test_download_imagegem_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    files = _release_files()
    with hub(files, corrupt={SHARD}) as server:
        with pytest.raises(DownloadError) as e:
            download_imagegem(tmp_path / "r", endpoint=server.url, progress=False)
        assert e.value.rule == "checksum"
        assert "MAPS-research/ImageGem-images/" + SHARD in str(e.value)
        assert not (tmp_path / "r" / "raw" / "ImageGem-images" / SHARD).exists()
        card = json.loads((tmp_path / "r" / DATACARD_JSON).read_text())
        assert card["complete"] is False
    # the server is gone: one clear error naming the repo, suggesting a re-run
    with pytest.raises(DownloadError) as e:
        download_imagegem(tmp_path / "r2", endpoint=server.url, progress=False)
    assert e.value.rule == "network" and "MAPS-research/ImageGem-images" in str(e.value)
    assert "re-run" in str(e.value)
    with pytest.raises(DataError, match="unknown repo"):
        download_imagegem(tmp_path / "r3", revision={"x/y": "main"}, progress=False)
    shutil.rmtree(tmp_path / "r", ignore_errors=True)


# --------------------------------------------------------------------------- CLI
def _cli():
    import typer

    from benchmark.cli_download import download, images

    app = typer.Typer()
    data = typer.Typer()
    app.add_typer(data, name="data")
    data.command("download")(download)
    data.command("images")(images)
    return app


def test_cli_commands(tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    with image_host() as host:
        pd.DataFrame({"image_id": ["a", "g"], "url": [host.url + "/i/a.png",
                                                      host.url + "/i/gone.jpg"]}
                     ).to_parquet(tmp_path / "t.parquet")
        r = runner.invoke(_cli(), ["data", "images", "--dataset", str(tmp_path / "t.parquet"),
                                   "--workers", "2", "--retries", "0", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "image-cache" / REPORT_FILE).read_text())["failed"][
        "not_found"] == ["g"]
    assert '"ok": 1' in r.output
    r = runner.invoke(_cli(), ["data", "download", "civitai", "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "unknown source 'civitai'" in r.output


def test_cli_module_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys, benchmark.cli_download; "
            "print(sorted(m for m in ('pandas', 'huggingface_hub', 'requests', 'PIL') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_fetch_images_interrupted_run_keeps_what_it_finished(tmp_path, monkeypatch):
    import benchmark.data.fetch_images as fi

    real = fi._run_pool

    def interrupted(jobs, *args):
        for n, res in enumerate(real(jobs, *args)):
            if n == 2:
                raise KeyboardInterrupt
            yield res

    with image_host() as host:
        frame = pd.DataFrame({"image_id": ["a", "b", "c", "g"],
                              "url": [host.url + p for p in ("/i/a.png", "/i/b.jpg", "/i/c.png",
                                                             "/i/gone.jpg")]})
        monkeypatch.setattr(fi, "_run_pool", interrupted)
        with pytest.raises(KeyboardInterrupt):
            fetch_images(frame, tmp_path / "c", workers=1, progress=False)
        index = pd.read_parquet(tmp_path / "c" / INDEX_FILE)
        assert len(index) == 2  # the two results handed over before the interrupt
        monkeypatch.setattr(fi, "_run_pool", real)
        before = host.total()
        report = fetch_images(frame, tmp_path / "c", workers=1, progress=False)
        assert report["counts"]["cached"] == 2 and report["requests"] == 2
        assert host.total() - before == 2
