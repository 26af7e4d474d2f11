"""lora-edit track: metrics by hand, the synthetic world's renderer/judge, methods, the run, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark.data.synthetic import synthesize
from benchmark.lora.bank import Layout, read_lora, to_vector
from benchmark.lora.metrics import (
    per_user_mean,
    preference_gain,
    render_fidelity,
    weight_distance,
    win_indicator,
)
from benchmark.lora.synthetic import LAYERS, SyntheticJudge, SyntheticRenderer, SyntheticWorld
from benchmark.lora.track import (
    CURVE_METRICS,
    EDIT_METHODS,
    curve_frame,
    resolve_edit_method,
    run_lora_edit,
)

STEPS = (0.5, 1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synthesize("tiny", tmp_path_factory.mktemp("ds") / "synthetic-tiny", seed=0,
                      progress=False)


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    result = run_lora_edit(tiny, steps=STEPS, default_step=1.0, results_dir=root / "results",
                           data_dir=root / "data", n_components=16, n_users=30,
                           loras_per_user=2, bank_size=120, progress=False, echo=lambda *a: None)
    return result, root


def test_metrics_by_hand():
    np.testing.assert_allclose(preference_gain([3.0, 1.0], [1.0, 1.5]), [2.0, -0.5])
    np.testing.assert_array_equal(win_indicator([2.0, 1.0, 0.0], [1.0, 1.0, 1.0]), [1, 0.5, 0])
    np.testing.assert_array_equal(win_indicator([1.05], [1.0], tie_tol=0.1), [0.5])
    np.testing.assert_allclose(render_fidelity([[1, 0], [1, 1], [0, 0]], [[2, 0], [1, 0], [1, 0]]),
                               [1.0, 1 / np.sqrt(2), 0.0])
    # one 2x2 rank-1 layer: a = e1 e1^T, b = e2 e2^T -> ||a - b||_F = sqrt(2)
    layout = Layout("rank1", (("l", 2, 2, 1),))
    a, b = np.array([[1, 0, 1, 0], [1, 0, 1, 0]]), np.array([[0, 1, 0, 1], [2, 0, 1, 0]])
    np.testing.assert_allclose(weight_distance(a, b, layout), [np.sqrt(2), 1.0])
    # raw rank 2 layer: U D = I vs 0 -> sqrt(2)
    raw = Layout("raw", (("l", 2, 2, 2),))
    eye = np.array([[1, 0, 0, 1, 1, 0, 0, 1]])
    np.testing.assert_allclose(weight_distance(eye, np.zeros_like(eye), raw), [np.sqrt(2)])
    np.testing.assert_allclose(per_user_mean([1, 3, 5, 7], np.array([0, 0, 2, 2]), 3),
                               [2.0, np.nan, 6.0])


def test_synthetic_world_renders_true_style_and_judges_true_utility(tiny, tmp_path):
    world = SyntheticWorld(tiny)
    paths = world.write_bank(tmp_path / "bank", limit=12, progress=False)
    loras = [read_lora(p) for p in paths]
    assert {lo.style for lo in loras} == {"kohya", "peft"}
    assert {lo.layers[LAYERS[0][0]][0].shape[1] for lo in loras} > {1}  # mixed ranks
    renderer, judge = SyntheticRenderer(world), SyntheticJudge(world)
    truth = world.lora_style[:12]
    # rendering the files' own weights recovers the true style (noise is small)
    e = renderer.render([lo.layers for lo in loras])
    np.testing.assert_allclose(e, world.embed(truth), atol=0.02)
    # the rank-1 canonical vectors render the same way
    from benchmark.lora.bank import layout_of

    layout = layout_of(loras[0])
    vec = np.stack([to_vector(lo) for lo in loras])
    np.testing.assert_allclose(renderer.render(vec, layout), e, atol=0.02)
    # the judge of a noise-free render is beta * <taste, style>
    users = np.asarray(world.user_ids[:12], dtype=object)
    scores = judge.score(users, world.embed(truth))
    np.testing.assert_allclose(scores, world.beta * (world.user_taste[:12] * truth).sum(1),
                               atol=1e-4)
    # the embedding map is the data set's: its LoRA embeddings are close to the noise-free ones
    cos = (np.asarray(tiny.embeddings("synthetic-clip", "lora")) * world.embed(
        world.lora_style)).sum(1)
    assert cos.mean() > 0.85


def test_run_writes_one_record_per_method_with_the_curve(run):
    result, root = run
    names = [r["method"]["name"] for r in result["records"]]
    assert names == list(EDIT_METHODS)
    rec = result["records"][names.index("no-edit")]
    assert rec["track"] == "lora-edit" and rec["split"]["protocol"] == "leave-last-out"
    assert rec["metrics"]["gain"] == 0.0 and rec["metrics"]["win_rate"] == 0.5
    assert rec["metrics"]["fidelity"] == pytest.approx(1.0, abs=1e-6)
    assert rec["metrics"]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert rec["n_users_evaluated"] == 30 and rec["n_edits"] == 60
    assert len(rec["per_user"]["user_id"]) == 30 and len(rec["per_user"]["gain@0.5"]) == 30
    path = root / "results" / "synthetic-tiny" / "leave-last-out" / "lora-edit" / "no-edit.json"
    assert json.loads(path.read_text())["method"]["name"] == "no-edit"
    curve = result["curve"]
    assert len(curve) == len(EDIT_METHODS) * len(STEPS)
    assert list(curve.columns[:5]) == ["method", "step", "gain", "gain_low", "gain_high"]
    assert set(CURVE_METRICS) <= set(curve.columns)
    frame = curve_frame(result["records"]).set_index(["method", "step"])
    oracle, rand = frame.loc[("oracle-direction", 1.0)], frame.loc[("random-direction", 1.0)]
    assert oracle["gain"] > rand["gain"] and oracle["win_rate"] > 0.9
    assert oracle["gain_low"] <= oracle["gain"] <= oracle["gain_high"]
    # bigger steps move further and keep less fidelity
    user = frame.xs("user-direction")
    assert user.loc[1.0, "distance"] > user.loc[0.5, "distance"]
    assert user.loc[1.0, "fidelity"] < user.loc[0.5, "fidelity"] < 1.0


def test_edit_protocol_step_sizes_and_trust_region(run, tiny):
    result, root = run
    from benchmark.lora.bank import open_index

    rec = result["records"][0]
    index = open_index(rec["bank"]["path"])
    # rebuild the fitted pieces through the public API of one method
    from benchmark.lora.space import fit_space
    from benchmark.lora.track import EditBank

    space = fit_space(index, 0, 16)
    z = space.transform_batches(index.vectors(0))
    import pandas as pd

    ids = pd.Index(index.ids(0), dtype=object)
    scale = float(np.sqrt(((z - z.mean(0)) ** 2).sum(1).mean()))
    emb_rows = tiny.ids("loras").get_indexer(ids)
    bank = EditBank(ids, z, space, scale, np.asarray(tiny.embeddings("synthetic-clip", "lora"))
                    [emb_rows], None, SyntheticWorld(tiny))
    from benchmark.protocols import InteractionData

    users = pd.Index(np.asarray(tiny.ids("users")[:5], dtype=object))
    mat = __import__("scipy.sparse", fromlist=["csr_matrix"]).csr_matrix(
        (np.ones(5), (np.arange(5), np.arange(5))), shape=(5, len(ids)))
    train = InteractionData(users, ids, mat, pd.DataFrame(), "lora")
    u, lo = np.asarray(users[:3], dtype=object), np.asarray(ids[10:13], dtype=object)
    for name in EDIT_METHODS:
        _, cls = resolve_edit_method(name)
        m = cls().fit(bank, train)
        np.testing.assert_allclose(m.edit(u, lo, 0.0), z[10:13], atol=1e-6)
        moved = np.linalg.norm(m.edit(u, lo, 1.5) - z[10:13], axis=1)
        if name == "no-edit":
            np.testing.assert_allclose(moved, 0.0)
        elif name == "judge-gradient":
            assert (moved <= 1.5 * scale + 1e-6).all() and (moved > 0).all()
        else:
            np.testing.assert_allclose(moved, 1.5 * scale, rtol=1e-6)
        single = m.edit(u[0], lo[0], 1.0)
        np.testing.assert_allclose(single, m.edit(u[:1], lo[:1], 1.0)[0])
    with pytest.raises(KeyError):
        resolve_edit_method("no-such-method")


def test_cli_synth_index_space(tiny, tmp_path):
    from benchmark.cli_loras import edit_app, loras_app

    cli = CliRunner()
    r = cli.invoke(loras_app, ["synth", "--dataset", str(tiny.path), "--out",
                               str(tmp_path / "files"), "--limit", "30", "-q"])
    assert r.exit_code == 0, r.output
    (tmp_path / "files" / "zz-broken.safetensors").write_bytes(b"junk")
    r = cli.invoke(loras_app, ["index", str(tmp_path / "files"), "--out", str(tmp_path / "ix"),
                               "-q"])
    assert r.exit_code == 0, r.output
    assert "indexed 30 LoRAs, skipped 1" in r.output and "zz-broken.safetensors" in r.output
    r = cli.invoke(loras_app, ["space", str(tmp_path / "ix"), "--components", "8", "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output.strip().splitlines()[-1])
    assert report["components"] == 8 and report["n_loras"] == 30
    assert 0.5 < report["explained_variance"] <= 1.0
    r = cli.invoke(loras_app, ["space", str(tmp_path / "ix"), "--components", "99", "-q"])
    assert r.exit_code == 2 and "n_components" in r.output
    r = cli.invoke(edit_app, ["run", "--dataset", str(tiny.path), "--methods",
                              "no-edit,oracle-direction", "--steps", "1", "--components", "8",
                              "--n-users", "10", "--data-dir", str(tmp_path / "data"),
                              "--results-dir", str(tmp_path / "res"), "--leaderboard-dir",
                              str(tmp_path / "lb"), "-q"])
    assert r.exit_code == 0, r.output
    assert "oracle-direction" in r.output and r.output.count("wrote ") == 2
    board = tmp_path / "lb" / "synthetic-tiny" / "leave-last-out"
    assert "| oracle-direction |" in (board / "lora-edit.md").read_text()
    assert "| oracle-direction | 1 |" in (board / "lora-edit-gain-vs-fidelity.md").read_text()
    assert (tmp_path / "res" / "synthetic-tiny" / "leave-last-out" / "lora-edit"
            / "oracle-direction.json").is_file()
    r = cli.invoke(edit_app, ["run", "--dataset", str(tiny.path), "--methods", "nope",
                              "--data-dir", str(tmp_path / "data"), "-q"])
    assert r.exit_code == 2 and "unknown editing method" in r.output
