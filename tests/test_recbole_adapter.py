"""recbole:<Model> trains with RecBole and ranks through gembench's engine; the compat shim;
the MovieLens-100K cross-check on a subsample. Needs the ``cf`` extra (make installs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch", reason="the cf extra (torch, RecBole) is not installed")
pytest.importorskip("recbole", reason="RecBole is not installed (make install adds it)")

from baselines.random import RandomRanker  # noqa: E402
from baselines.recbole_adapter import RecBoleModel, for_model  # noqa: E402
from benchmark.evaluate import evaluate_ranking  # noqa: E402
from benchmark.protocols import InteractionData, SideInfo  # noqa: E402
from benchmark.registry import METHODS, resolve_method  # noqa: E402
from benchmark.runner import track_data  # noqa: E402
from benchmark.splits import SplitConfig, make_split  # noqa: E402

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
METRICS = ("recall@10", "ndcg@10")
MODELS = ("BPR", "LightGCN", "MultVAE", "SASRec")
# RecBole 1.2.1's own calls into torch / numpy deprecations, not gembench's
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning",
                                        "ignore::FutureWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny synthetic world's lora-rec track: fit (train + valid) and test relevance."""
    from benchmark.data.synthetic import synthesize

    ds = synthesize("tiny", tmp_path_factory.mktemp("tiny") / "ds", seed=0, progress=False)
    split = make_split(ds, SplitConfig(tracks=("lora-rec",)))
    fit, relevant = track_data(split, "lora", "test")
    return fit, relevant, SideInfo(dataset=ds, item_kind="lora", seed=0)


@pytest.fixture(scope="module")
def fitted(tiny):
    """Each model trained for 2 epochs (once per module: RecBole is slow to start)."""
    fit, _, side = tiny
    return {m: RecBoleModel(m, epochs=2, embedding_size=16, seed=0).fit(fit, side)
            for m in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_scores_and_engine(tiny, fitted, model):
    fit, relevant, _ = tiny
    method = fitted[model]
    users = np.array([0, 5, 17, fit.n_users - 1])
    scores = method.score(users)
    assert scores.shape == (4, fit.n_items) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert (scores.std(axis=1) > 0).all()  # a trained model separates items
    ev = evaluate_ranking(method, fit.matrix, relevant, METRICS, progress=False)
    assert ev.n_users_evaluated == int((np.diff(relevant.indptr) > 0).sum())
    # the engine masked every training item: no ranked list holds one
    history = fit.matrix[ev.user_idx]
    for row, items in enumerate(ev.ranked):
        assert not set(items.tolist()) & set(history[row].indices.tolist())
    assert 0.0 <= ev.summary["recall@10"] <= 1.0


def test_item_and_user_mapping_follow_gembench_indices(tiny, fitted):
    """Scores come back in gembench's item order: BPR's score is the dot product of the
    RecBole embeddings of exactly the mapped user and item."""
    fit, _, _ = tiny
    method = fitted["BPR"]
    net = method.model_
    u, rb_u = 7, method.user_map_[7]
    expected = (net.user_embedding.weight[rb_u] @ net.item_embedding.weight[method.item_map_].T)
    np.testing.assert_allclose(method.score(np.array([u]))[0], expected.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert sorted(method.item_map_.tolist()) == list(range(1, fit.n_items + 1))  # 0 = [PAD]


def test_deterministic_with_seed(tiny, fitted):
    fit, _, side = tiny
    users = np.arange(10)
    again = RecBoleModel("BPR", epochs=2, embedding_size=16, seed=0).fit(fit, side)
    np.testing.assert_array_equal(again.score(users), fitted["BPR"].score(users))
    other = RecBoleModel("BPR", epochs=2, embedding_size=16, seed=1).fit(fit, side)
    assert not np.allclose(other.score(users), fitted["BPR"].score(users))


def test_better_than_random(tiny):
    """LightGCN trained 30 epochs beats uniform random ranking on the synthetic world,
    whose interactions follow clustered tastes (the gap is large: see the assertion)."""
    fit, relevant, side = tiny
    model = RecBoleModel("LightGCN", epochs=30, embedding_size=16, learning_rate=1e-2,
                         seed=0).fit(fit, side)
    ours = evaluate_ranking(model, fit.matrix, relevant, METRICS, progress=False)
    rand = evaluate_ranking(RandomRanker(seed=0).fit(fit, side), fit.matrix, relevant,
                            METRICS, progress=False)
    assert ours.summary["ndcg@10"] > 3 * rand.summary["ndcg@10"]  # 0.26 vs 0.03 here


def test_sequences_are_last_items_in_time_order():
    """SASRec's input: each user's fit items ordered by time, truncated to the last max_len."""
    rows = pd.DataFrame({
        "user_id": ["a"] * 5 + ["b"] * 2,
        "item_id": ["i3", "i1", "i4", "i0", "i2", "i2", "i0"],
        "timestamp": pd.to_datetime([5, 1, 4, 2, 3, 9, 8], unit="D"),
    })
    data = InteractionData.from_frame(rows, pd.Index(["a", "b"], dtype=object),
                                      pd.Index([f"i{k}" for k in range(5)], dtype=object), "lora")
    method = RecBoleModel("SASRec", max_seq_length=3)
    method.item_map_ = np.arange(5) + 10  # a stand-in id map, to see it applied
    seq, length = method._sequences(data, 3)
    # a in time order: i1, i0, i2, i4, i3 -> last three; b: i0, i2
    np.testing.assert_array_equal(seq, [[12, 14, 13], [10, 12, 0]])
    np.testing.assert_array_equal(length, [3, 2])


def test_registry_resolves_any_recbole_model():
    name, cls = resolve_method("recbole:LightGCN")
    assert name == "recbole:LightGCN" and issubclass(cls, RecBoleModel)
    method = cls(seed=3)
    assert method.get_params()["model"] == "LightGCN" and method.seed == 3
    assert cls.name == "recbole:LightGCN" and cls.__qualname__ == "RecBoleModel"
    assert resolve_method("recbole:NGCF")[1]().model == "NGCF"  # not listed, still runs
    for model in MODELS:
        # default on lora-rec / leave-last-out only (make run's time budget, docs/recbole.md)
        spec = METHODS[f"recbole:{model}"]
        assert spec.runs_by_default("lora-rec")
        assert spec.runs_by_default("lora-rec", "leave-last-out")
        assert not spec.runs_by_default("lora-rec", "cold-start")
        assert not spec.runs_by_default("image-rec")
        assert not spec.runs_by_default("image-rec", "leave-last-out")
    assert METHODS["popularity"].runs_by_default("image-rec", "cold-start")  # others unchanged
    assert not METHODS["vlm-rerank"].runs_by_default("lora-rec", "leave-last-out")
    assert for_model("BPR")(epochs=1).get_params()["epochs"] == 1


def test_per_model_defaults_and_search_spaces():
    """recbole:<listed model> carries its MODEL_DEFAULTS in its signature (so records show
    them) and its MODEL_SPACES entry; other models keep the class's."""
    from baselines.recbole_adapter import MODEL_SPACES

    sasrec = for_model("SASRec")
    params = sasrec().get_params()
    assert {k: params[k] for k in ("max_seq_length", "n_layers", "n_heads", "inner_size",
                                   "hidden_act", "loss_type", "threads")} == {
        "max_seq_length": 20, "n_layers": 1, "n_heads": 1, "inner_size": 64,
        "hidden_act": "relu", "loss_type": "BPR", "threads": 1}
    assert sasrec(loss_type="CE").loss_type == "CE"  # still overridable
    assert sasrec.search_space == MODEL_SPACES["SASRec"][0] and sasrec.default_budget == 5
    mult = for_model("MultVAE")()
    assert (mult.model, mult.train_batch_size, mult.inner_size) == ("MultVAE", 500, 200)
    assert for_model("MultVAE").search_space == MODEL_SPACES["MultiVAE"][0]
    ngcf = for_model("NGCF")
    assert ngcf.search_space == RecBoleModel.search_space and ngcf().n_layers is None
    for model in MODELS:  # every searched key is a parameter, every value a list
        cls = for_model(model)
        assert set(cls.search_space) <= set(cls().get_params())


def test_new_keys_reach_recbole(tiny, tmp_path):
    """The per-model settings end up in RecBole's Config and in the model it builds."""
    import torch
    from recbole.config import Config

    from baselines.recbole_adapter import _quiet_in

    fit, _, side = tiny
    before = torch.get_num_threads()
    sasrec = for_model("SASRec")(epochs=1, embedding_size=16, seed=0).fit(fit, side)
    assert torch.get_num_threads() == before  # threads=1 only while training
    net = sasrec.model_
    assert net.loss_type == "BPR" and len(net.trm_encoder.layer) == 1
    ffn = net.trm_encoder.layer[0].feed_forward
    assert ffn.dense_1.out_features == 64 and ffn.intermediate_act_fn is torch.nn.functional.relu
    assert net.trm_encoder.layer[0].multi_head_attention.num_attention_heads == 1
    assert sasrec.sequences_[0].shape[1] == 20

    # MultVAE's inner_size becomes mlp_hidden_size; the CE loss keeps negative sampling off
    mult = for_model("MultVAE")(embedding_size=16)
    with _quiet_in(tmp_path):  # Config reads sys.argv: pytest's must not reach it
        config = Config(model="MultiVAE", dataset="gb", config_dict=mult.recbole_config(tmp_path))
    assert config["mlp_hidden_size"] == [200] and config["train_batch_size"] == 500
    ce = RecBoleModel("SASRec", loss_type="CE", n_layers=3).recbole_config(tmp_path)
    assert ce["train_neg_sample_args"] is None and ce["n_layers"] == 3
    assert "n_heads" not in ce and ce["inner_size"] == 4 * 64  # None: RecBole's own default


def test_runner_writes_a_record(tmp_path):
    from benchmark import api

    out = api.run(dataset="synthetic-tiny", tracks=["lora-rec"], methods=["recbole:MultVAE"],
                  data_dir=tmp_path / "data", results_dir=tmp_path / "results",
                  leaderboard_dir=None, progress=False, echo=lambda *_: None)
    [path] = out["records"]
    import json

    record = json.loads(Path(path).read_text())
    assert record["method"]["name"] == "recbole:MultVAE"
    assert record["method"]["class"] == "baselines.recbole_adapter:RecBoleModel"
    assert record["method"]["params"]["model"] == "MultVAE"


def test_compat_shim_restorations(tmp_path):
    """What the shim restores, each used the way RecBole uses it."""
    import argparse

    import recbole.trainer.trainer as trainer_module
    import scipy.sparse as sp
    import torch

    import baselines.recbole_compat as compat

    # the aliases RecBole's Config reads (numpy 2 removed them)
    assert vars(np)["float_"] is np.float64 and vars(np)["complex_"] is np.complex128
    a = sp.dok_matrix((3, 3), dtype=np.float32)
    a._update({(0, 2): 1.0, (2, 0): 1.0})  # LightGCN's adjacency build
    assert a.toarray()[0, 2] == 1.0 and a.nnz == 2
    path = tmp_path / "ckpt.pth"
    # a checkpoint that pickles a plain object, as RecBole's pickles its Config
    torch.save({"config": argparse.Namespace(model="BPR"), "state_dict": {}}, path)
    if torch.__version__ >= "2.6":  # weights_only=True became the default: the raw call fails
        with pytest.raises(Exception, match="[Ww]eights only"):
            torch.load(path)
    assert "state_dict" in trainer_module.torch.load(path)  # the Trainer's reload works
    assert trainer_module.torch.optim is torch.optim  # everything else is plain torch
    assert {"numpy.float_", "scipy.sparse.dok_matrix._update"} <= set(compat.RESTORED)


needs_ml100k = pytest.mark.skipif(
    not (ML100K / "ml-100k.inter").is_file(),
    reason=f"MovieLens-100K atomic files not found at {ML100K} (the repository does not "
           "copy MovieLens; put ml-100k.inter there to run the RecBole cross-check)",
)


@needs_ml100k
def test_crosscheck_subsample(tmp_path):
    """On 150 users: gembench's metrics on RecBole's own top-10 lists equal RecBole's
    reported recall@10 / ndcg@10 to 1e-6; gembench's itemknn is close to RecBole's ItemKNN."""
    from benchmark.crosscheck_recbole import crosscheck

    result = crosscheck(ML100K, epochs=2, max_users=150, workdir=tmp_path)
    assert set(result.list_agreement) == {"BPR", "ItemKNN"}
    assert max(result.list_agreement.values()) <= 1e-6
    assert result.n_users == 150
    rows = {(r.model, r.source): r.metrics for r in result.rows}
    rb = rows[("ItemKNN", "RecBole run_recbole (fit train, early stop on valid)")]
    gb = rows[("ItemKNN", "gembench itemknn (fit train, RecBole's protocol)")]
    assert rb["recall@10"] > 0.02  # a real signal, not an empty ranking
    assert abs(rb["recall@10"] - gb["recall@10"]) < 0.02
    assert "RecBole" in result.table() and len(result.rows) == 8
