"""`gembench embed`: tiny randomly initialised encoders (no weights downloaded), resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from benchmark import embed as E  # noqa: E402
from benchmark.cli import app  # noqa: E402

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                   "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg")
    (folder / "gem-tiny.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder / "gem-tiny.json")
    return "gem-tiny"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(10):
        arr = rng.integers(0, 256, (24 + i, 20 + 2 * i, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"img{i:02d}.png")
    (folder / "img05.png").write_bytes(b"not a png at all")  # corrupt
    return folder


class Counting(E.Encoder):
    """Wraps an encoder and counts what it is asked to encode."""

    def __init__(self, inner):
        self.inner, self.name, self.meta, self.seen = inner, inner.name, inner.meta, 0

    def encode_images(self, ims):
        self.seen += len(ims)
        return self.inner.encode_images(ims)

    def encode_texts(self, texts):
        self.seen += len(texts)
        return self.inner.encode_texts(texts)


def _torch_seed():
    import torch

    torch.manual_seed(0)


def test_open_clip_images_resume_equals_uninterrupted(tiny_arch, images, tmp_path):
    _torch_seed()
    enc = E.load_encoder(f"open_clip:{tiny_arch}:none", device="cpu")
    full = E.embed(enc, tmp_path / "a", images=images, batch_size=3, progress=False)
    assert full["complete"] and full["rows"] == 9 and full["dim"] == 16
    assert full["missing"] == ["img05"] and full["missing_count"] == 1
    pre = full["preprocessing"]
    assert pre["image_size"] in (32, [32, 32]) and len(pre["mean"]) == 3 and len(pre["std"]) == 3
    assert full["weights"] == "random-init"

    # interrupted after 2 batches by max_batches, then by an exception in the callback
    counting = Counting(enc)
    part = E.embed(counting, tmp_path / "b", images=images, batch_size=3, max_batches=2,
                   progress=False)
    assert not part["complete"] and part["done_batches"] == 2 and counting.seen == 5

    def boom(b):
        if b == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        E.embed(counting, tmp_path / "b", images=images, batch_size=3, on_batch=boom,
                progress=False)
    assert counting.seen == 8  # batch 1 held the corrupt img05; batch 2 is recorded
    counting.seen = 0
    done = E.embed(counting, tmp_path / "b", images=images, batch_size=3, progress=False)
    assert done["complete"] and done["computed_batches"] == 1 and counting.seen == 1

    a, ids_a, meta_a = E.read_store(tmp_path / "a", "open_clip-gem-tiny-none")
    b, ids_b, meta_b = E.read_store(tmp_path / "b", "open_clip-gem-tiny-none")
    assert isinstance(a, np.memmap) and a.dtype == np.float32
    assert ids_a == ids_b == [f"img{i:02d}" for i in range(10) if i != 5]
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert meta_b["missing"] == ["img05"]
    folder = tmp_path / "b" / "embeddings" / "open_clip-gem-tiny-none"
    assert not (folder / "images.progress.json").exists()
    assert not (folder / "images.partial.npy").exists()

    # a finished store is not recomputed
    counting.seen = 0
    again = E.embed(counting, tmp_path / "b", images=images, batch_size=3, progress=False)
    assert again["computed_batches"] == 0 and counting.seen == 0


def test_texts_and_store_compatible_with_dataset(tiny_arch, tmp_path):
    import pandas as pd

    from benchmark.data.store import Dataset

    table = tmp_path / "prompts.parquet"
    pd.DataFrame({"lora_id": ["l1", "l2", "l3"],
                  "prompt": ["a cat", "anime girl, tag", None]}).to_parquet(table)
    _torch_seed()
    enc = E.load_encoder(f"open_clip:{tiny_arch}:none", device="cpu")
    out = tmp_path / "ds"
    res = E.embed(enc, out, texts=table, kind="loras", batch_size=2, progress=False)
    assert res["rows"] == 3 and res["kind"] == "loras"
    (out / "dataset.json").write_text("{}")
    arr = Dataset(out).embeddings("open_clip-gem-tiny-none", "loras")
    assert arr.shape == (3, 16)
    _, ids, _ = E.read_store(out, "open_clip-gem-tiny-none", "loras")
    assert ids == ["l1", "l2", "l3"]


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_hf_local_folder_via_cli(family, images, tmp_path):
    import transformers as T

    if family == "clip":
        cfg = T.CLIPConfig(  # eos/bos ids of the tiny vocabulary: CLIP pools at the eos token
            text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "vocab_size": 100,
                         "max_position_embeddings": 16, "bos_token_id": 0,
                         "eos_token_id": 1, "pad_token_id": 1},
            vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
            projection_dim=16)
        model = T.CLIPModel(cfg)
        proc = T.CLIPImageProcessor(size={"shortest_edge": 32},
                                    crop_size={"height": 32, "width": 32})
        vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
        for c in "abcdefghijklmnopqrstuvwxyz":
            vocab[c] = len(vocab)
            vocab[c + "</w>"] = len(vocab)
        (tmp_path / "vocab.json").write_text(json.dumps(vocab))
        (tmp_path / "merges.txt").write_text("#version: 0.2\n")
        # from_pretrained reads vocab.json + merges.txt (in transformers 5 the constructor's
        # vocab_file / merges_file are ignored and every token would become unknown)
        tok = T.CLIPTokenizer.from_pretrained(tmp_path, model_max_length=16)
        assert tok.tokenize("cat") == ["c", "a", "t</w>"]
    else:
        cfg = T.SiglipConfig(
            text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "vocab_size": 100,
                         "max_position_embeddings": 16},
            vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 8})
        model = T.SiglipModel(cfg)
        proc = T.SiglipImageProcessor(size={"height": 32, "width": 32})
        # SigLIP's own tokenizer is SentencePiece; any saved tokenizer loads through
        # AutoTokenizer, so a word-level one from `tokenizers` exercises the text path
        from tokenizers import Tokenizer, models, pre_tokenizers

        words = ["<pad>", "<unk>", "a", "cat", "dog", "on", "hill"]
        core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        core.pre_tokenizer = pre_tokenizers.Whitespace()
        tok = T.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>",
                                        unk_token="<unk>", model_max_length=16)
    local = tmp_path / f"tiny-{family}"
    model.save_pretrained(local)
    proc.save_pretrained(local)
    if tok is not None:
        tok.save_pretrained(local)

    res = CliRunner().invoke(app, ["embed", "--encoder", f"hf:{local}", "--images",
                                   str(images), "--out", str(tmp_path / "store"),
                                   "--batch-size", "4", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    arr, ids, meta = E.read_store(tmp_path / "store", f"hf-tiny-{family}")
    dim = 16 if family == "clip" else 32
    assert arr.shape == (9, dim) and len(ids) == 9 and meta["missing"] == ["img05"]
    assert meta["preprocessing"]["mean"] and meta["library"] == "transformers"
    np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
    if tok is not None:  # texts through the saved tokenizer
        import pandas as pd

        table = tmp_path / "prompts.csv"
        pd.DataFrame({"id": ["p1", "p2", "p3"],
                      "prompt": ["a cat", "a dog on a hill", ""]}).to_csv(table, index=False)
        res = E.embed(E.load_encoder(f"hf:{local}", device="cpu"), tmp_path / "store",
                      texts=table, batch_size=2, progress=False)
        arr, ids, meta = E.read_store(tmp_path / "store", f"hf-tiny-{family}", "texts")
        assert arr.shape == (3, dim) and ids == ["p1", "p2", "p3"] and meta["rows"] == 3
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)
        assert not np.allclose(arr[0], arr[1])  # different prompts, different embeddings


def test_cli_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(app, ["embed", "--encoder", "nope:x", "--images", str(tmp_path),
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["embed", "--encoder", "open_clip:ViT-B-32:none",
                                   "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "exactly one" in res.output


def test_embed_help():
    res = CliRunner().invoke(app, ["embed", "--help"])
    assert res.exit_code == 0 and "--encoder" in res.output and "--texts" in res.output


def test_images_from_a_table_equal_the_folder_run(tiny_arch, images, tmp_path):
    """--images TABLE: ids from its id column, paths relative to the table's folder."""
    import pandas as pd

    _torch_seed()
    enc = E.load_encoder(f"open_clip:{tiny_arch}:none", device="cpu")
    E.embed(enc, tmp_path / "by-folder", images=images, batch_size=4, progress=False)
    rows = pd.DataFrame({"image_id": [f"x{i}" for i in (3, 1, 5)],
                         "path": ["img03.png", "img01.png", "img05.png"]})
    table = images / "list.csv"
    rows.to_csv(table, index=False)
    try:
        E.embed(enc, tmp_path / "by-table", images=table, batch_size=2, progress=False)
        bad = images / "nopath.csv"
        rows.rename(columns={"path": "file"}).to_csv(bad, index=False)
        with pytest.raises(E.DataError, match="no column 'path'"):
            E.list_images(bad)
    finally:
        table.unlink()
        (images / "nopath.csv").unlink(missing_ok=True)
    folder, folder_ids, _ = E.read_store(tmp_path / "by-folder", enc.name.replace(":", "-"))
    arr, ids, meta = E.read_store(tmp_path / "by-table", enc.name.replace(":", "-"))
    assert ids == ["x3", "x1"] and meta["missing"] == ["x5"]  # img05 is the corrupt file
    for got, name in zip(arr, ("img03", "img01"), strict=True):
        np.testing.assert_allclose(got, folder[folder_ids.index(name)], atol=1e-6)
