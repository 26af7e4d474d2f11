"""Tables from records: significance marks, determinism, LaTeX, and index.html in a browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark import __version__
from benchmark.cli import app
from benchmark.leaderboard import build_tables, write_leaderboards
from benchmark.results import make_record, record_path, write_record

runner = CliRunner()
USERS = [f"u{i:02d}" for i in range(40)]
FINGERPRINT = "cd" * 32


def ones(n: int, value: float = 1.0) -> np.ndarray:
    v = np.zeros(len(USERS))
    v[:n] = value
    return v


# alpha and beta tie on recall@20 (one user apart), gamma is clearly worse;
# beta beats alpha on every user on ndcg@20 / ndcg@10
VECTORS = {
    "alpha": {"recall@20": ones(30), "ndcg@20": ones(30, 0.5), "ndcg@10": ones(30, 0.5)},
    "beta": {"recall@20": ones(29), "ndcg@20": ones(30, 0.6), "ndcg@10": ones(30, 0.6)},
    "gamma": {"recall@20": ones(10), "ndcg@20": ones(10, 0.1), "ndcg@10": ones(10, 0.1)},
}


def write_records(results: Path, fingerprint: str = FINGERPRINT, methods=VECTORS,
                  checksum: str = "ab" * 32) -> None:
    for name, per_user in methods.items():
        record = make_record(
            track="lora-rec",
            dataset={"name": "hand", "path": "/nowhere", "files_sha256": checksum},
            split={"protocol": "leave-last-out", "fingerprint": fingerprint, "part": "test",
                   "fit_on": "train+valid", "interaction_kind": "generate"},
            method={"name": name, "class": f"x:{name}", "params": {}, "tuned": False},
            summary={m: float(v.mean()) for m, v in per_user.items()},
            per_user=per_user, user_ids=USERS,
            counts={"n_users_evaluated": len(USERS), "n_users_skipped": 0},
            seed=0, timing={"fit": 0.0, "evaluate": 0.0},
        )
        write_record(record, record_path(results, record))


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    write_records(tmp_path / "results")
    return tmp_path / "results"


def test_significance_marks(results):
    (table,), notes = build_tables(results)
    assert notes == []
    sig = {row["method"]: row["significance"] for row in table["rows"]}
    assert [row["method"] for row in table["rows"]] == ["beta", "alpha", "gamma"]
    assert sig["alpha"]["recall@20"]["best"] and sig["beta"]["recall@20"]["tied_with_best"]
    assert not sig["gamma"]["recall@20"]["tied_with_best"]
    assert sig["beta"]["ndcg@20"]["best"] and not sig["alpha"]["ndcg@20"]["tied_with_best"]
    assert "Wilcoxon" in table["significance_test"] and "Holm" in table["significance_test"]
    md = (write_leaderboards(results, results.parent / "lb")[0][0]).read_text()
    assert "| alpha | –" in md  # no recall@10 in these records
    assert "**0.7500**" in md and "0.7250†" in md and "0.2500 (" in md
    assert "Holm-corrected across methods, alpha = 0.05" in md
    assert f"gembench {__version__}; data set hand (files sha256 abababababababab); " \
           f"split fingerprint cdcdcdcdcdcdcdcd." in md


def test_same_records_give_byte_identical_files(results, tmp_path):
    files_a = write_leaderboards(results, tmp_path / "a")[0]
    files_b = write_leaderboards(results, tmp_path / "b")[0]
    again = write_leaderboards(results, tmp_path / "a")[0]
    assert [p.relative_to(tmp_path / "a") for p in files_a] == [
        Path("hand/leave-last-out/lora-rec.md"), Path("hand/leave-last-out/lora-rec.json"),
        Path("index.html")]
    for a, b, c in zip(files_a, files_b, again, strict=True):
        assert a.read_bytes() == b.read_bytes() == c.read_bytes()


def test_a_different_split_is_left_out(results, tmp_path):
    write_records(results, fingerprint="ef" * 32, methods={"delta": VECTORS["gamma"]})
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--out",
                              str(tmp_path / "lb")])
    assert res.exit_code == 0, res.output
    assert "delta.json: split fingerprint efefefefefef differs" in res.output
    assert "| delta |" not in res.output


def test_another_data_set_checksum_is_left_out(results, tmp_path):
    # same track fingerprint, other data files: not comparable either
    write_records(results, methods={"delta": VECTORS["gamma"]}, checksum="99" * 32)
    (table,), notes = build_tables(results)
    assert [n for n in notes if "delta.json: data set checksum 999999999999 differs from "
            "the table's abababababab; left out" in n]
    assert "delta" not in {row["method"] for row in table["rows"]}
    assert table["dataset_checksum"] == "ab" * 32 and table["split_fingerprint"] == FINGERPRINT


def test_metrics_choose_the_columns(results, tmp_path):
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--out",
                              str(tmp_path / "lb"), "--metrics", "ndcg@20,recall@20"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "lb/hand/leave-last-out/lora-rec.md").read_text()
    assert "| method | ndcg@20 | recall@20 | users |" in md
    saved = json.loads((tmp_path / "lb/hand/leave-last-out/lora-rec.json").read_text())
    assert saved["metrics"] == ["ndcg@20", "recall@20"]
    # the default columns without --metrics; image-rec's include ImageGem's Recall@100
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--out",
                              str(tmp_path / "lb2")])
    assert "| method | recall@10 | recall@20 | recall@50 | ndcg@10 |" in res.output
    from benchmark.leaderboard import table_metrics

    assert {"recall@100", "ndcg@100"} <= set(table_metrics("image-rec"))
    assert "recall@100" not in table_metrics("lora-rec")
    # an unknown name, or a cut-off above the track's max K: one clear error, exit 2
    for bad, says in (("recall@101", "cut-off 101 is above the lora-rec track's max K = 100"),
                      ("foo@3", "unknown metric 'foo@3'")):
        for fmt in (["--out", str(tmp_path / "lb3")], ["--format", "latex", "--track",
                                                        "lora-rec"]):
            res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), *fmt,
                                      "--metrics", bad])
            assert res.exit_code == 2 and says in res.output, res.output
            assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "lb3").exists()


CAPTION = (
    rf"lora-rec on hand, leave-last-out split (fingerprint cdcdcdcdcdcd). "
    rf"Mean over evaluated users $\pm$ half-width of the 95\% interval "
    rf"(percentile bootstrap over users, 1000 resamples, 95\%). Bold: best; "
    rf"\dag: not significantly different from the best (two-sided Wilcoxon "
    rf"signed-rank test over users, paired by user\_id, Holm-corrected "
    rf"across methods, alpha = 0.05). gembench {__version__}; data set hand "
    rf"(files sha256 abababababababab); split fingerprint cdcdcdcdcdcdcdcd."
)

EXPECTED_PM = rf"""\begin{{table}}[t]
\centering
\caption{{{CAPTION}}}
\label{{tab:hand-leave-last-out-lora-rec}}
\begin{{tabular}}{{lrr}}
\toprule
Method & Recall@20 & NDCG@20 \\
\midrule
beta & 0.7250\dag $\pm$ 0.1500 & \textbf{{0.4500}} $\pm$ 0.0750 \\
alpha & \textbf{{0.7500}} $\pm$ 0.1250 & 0.3750 $\pm$ 0.0625 \\
gamma & 0.2500 $\pm$ 0.1375 & 0.0250 $\pm$ 0.0138 \\
\bottomrule
\end{{tabular}}
\end{{table}}
"""


def test_latex_exact(results):
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--format", "latex",
                              "--track", "lora-rec", "--metrics", "recall@20,ndcg@20", "--pm"])
    assert res.exit_code == 0, res.output
    assert res.output == EXPECTED_PM
    # --intervals: bracketed intervals instead of half-widths; same numbers via the API
    from benchmark import api

    text = api.leaderboard(results, format="latex", track="lora-rec",
                           metrics=["recall@20"], style="intervals")["text"]
    rows = [line for line in text.splitlines() if line.endswith(r"\\")]
    assert rows[0] == r"Method & Recall@20 \\"
    low, high = json.loads((results / "hand/leave-last-out/lora-rec/beta.json").read_text()
                           )["intervals"]["recall@20"]
    assert rows[1] == rf"beta & 0.7250\dag [{low:.4f}, {high:.4f}] \\"
    assert "with the 95\\% interval" in text


def test_latex_errors(results):
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--format", "latex",
                              "--track", "image-rec", "--metrics", "recall@20"])
    assert res.exit_code == 2 and "no table for track 'image-rec'" in res.output
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(results), "--format", "latex",
                              "--track", "lora-rec", "--metrics", "recall@99"])
    assert res.exit_code == 2 and "unknown metric(s) ['recall@99']" in res.output


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_index_html_is_self_contained(results, tmp_path):
    write_leaderboards(results, tmp_path / "lb")
    page = (tmp_path / "lb/index.html").read_text()
    assert "src=" not in page and "href=" not in page and "https://" not in page
    assert page.count("<svg") == 1 and page.count('class="point"') == 3
    data = json.loads(page.split('id="lb-data">')[1].split("</script>")[0])
    assert [r["method"] for r in data[0]["rows"]] == ["beta", "alpha", "gamma"]


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium/Chrome installed "
                    "(apt-get install chromium) to load index.html")
def test_index_html_in_a_headless_browser(results, tmp_path):
    write_leaderboards(results, tmp_path / "lb")
    profile = tmp_path / "profile"
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--dump-dom",
           (tmp_path / "lb/index.html").as_uri()]
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env)
    dom = out.stdout
    assert 'data-rendered="1"' in dom, out.stderr[-2000:]  # the inline script ran
    for method in VECTORS:
        assert f'<tr data-method="{method}">' in dom
    assert dom.index('<tr data-method="beta">') < dom.index('<tr data-method="gamma">')
    assert '<td class="best">0.4500' in dom  # beta's ndcg@20, in bold
