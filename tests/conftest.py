"""Shared fixtures: a hand-made toy data set whose splits and metrics are computed by hand."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from benchmark.data.store import Dataset, DatasetWriter
from benchmark.schema import schema_of

SHARED = Path(__file__).resolve().parents[2] / "shared"

# user -> [(lora, day)], days are offsets from 2024-01-01; u4 has too little history
TOY_GENERATE = {
    "u1": [("l1", 1), ("l2", 2), ("l3", 3), ("l4", 4), ("l1", 5)],  # l1 twice: dedup keeps day 1
    "u2": [("l2", 1), ("l3", 2), ("l5", 3), ("l1", 4)],
    "u3": [("l1", 2), ("l2", 3), ("l3", 4)],
    "u4": [("l5", 1), ("l2", 2)],
}
TOY_LIKE = {
    "u1": [("i3", 1), ("i4", 2), ("i5", 3)],
    "u2": [("i1", 1), ("i4", 2), ("i6", 3), ("i5", 4)],
    "u3": [("i2", 1), ("i4", 2), ("i6", 5)],
}


def day(d: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01") + pd.Timedelta(days=d)


def write_toy(out: Path) -> Dataset:
    users = ["u1", "u2", "u3", "u4"]
    loras = ["l1", "l2", "l3", "l4", "l5"]
    images = ["i1", "i2", "i3", "i4", "i5", "i6"]
    rows = []
    for kind, item_kind, table in (("generate", "lora", TOY_GENERATE),
                                   ("like", "image", TOY_LIKE)):
        for user, events in table.items():
            rows += [(user, item, item_kind, kind, day(d), 1.0) for item, d in events]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "item_kind", "kind", "timestamp",
                                        "weight"])
    inter["timestamp"] = inter["timestamp"].astype("datetime64[s]")
    with DatasetWriter(out, {"name": "toy", "source": "test", "seed": 0}) as w:
        w.write_table("users", pd.DataFrame({"user_id": users}), schema_of("users"))
        w.write_table(
            "loras",
            pd.DataFrame({"lora_id": loras, "creator_id": "u1", "base_model": "SD 1.5",
                          "tags": [["a"]] * 5,
                          "created_at": pd.Series([day(0)] * 5).astype("datetime64[s]")}),
            schema_of("loras"),
        )
        w.write_table(
            "images",
            pd.DataFrame({"image_id": images, "user_id": "u4", "lora_ids": [["l1"]] * 6,
                          "prompt": "p", "created_at": pd.Series([day(0)] * 6)
                          .astype("datetime64[s]")}),
            schema_of("images"),
        )
        w.write_table("interactions", pa.Table.from_pandas(inter, preserve_index=False)
                      .cast(schema_of("interactions")), schema_of("interactions"))
    return Dataset(out)


@pytest.fixture()
def toy(tmp_path: Path) -> Dataset:
    return write_toy(tmp_path / "toy")
