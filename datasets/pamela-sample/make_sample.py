"""Write the invented PAMELA sample (annotations/pamela_<split>.json), deterministically.

Every value is invented; the layout follows the release (see ../pamela.md). Run with
``.venv/bin/python datasets/pamela-sample/make_sample.py``; tests check the checked-in files
equal what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

IMAGES = {  # image stem -> metadata
    f"img_{i:03d}": {
        "prompt": f"a {kind} of a {subject}",
        "model": "flux2" if i % 2 else "nano-banana",
        "group": subject,
        "type": "Art" if kind == "painting" else "Photorealism",
        "style": "Impressionism" if kind == "painting" else None,
    }
    for i, (kind, subject) in enumerate(
        [("painting", "harbour"), ("photo", "street"), ("painting", "flower"),
         ("photo", "portrait"), ("painting", "landscape"), ("photo", "food"),
         ("painting", "animal"), ("photo", "architecture"), ("painting", "still life"),
         ("photo", "cityscape")], start=1)
}
USERS = {
    "P001": {"age": 23, "gender": "female", "nationality": "Belgian"},
    "P002": {"age": 35, "gender": "male", "nationality": "German"},
    "P003": {"age": 41, "gender": "prefer not to say", "nationality": "Dutch"},
    "P004": {"age": 29, "gender": "male", "nationality": "Italian"},  # val_unseen only
    "P005": {"age": 52, "gender": "female", "nationality": "Spanish"},  # test_unseen only
}
# split -> [(participant, image number, rating)]; ratings 1..5 (an invented scale)
RATINGS = {
    "train": [("P001", 1, 5), ("P001", 2, 2), ("P001", 3, 4), ("P001", 4, 1),
              ("P002", 1, 2), ("P002", 2, 4), ("P002", 5, 3), ("P002", 6, 5),
              ("P003", 3, 3), ("P003", 4, 3), ("P003", 7, 1), ("P003", 8, 4),
              ("P001", 1, 5)],  # an exact duplicate of the first row: dropped, counted
    "val_seen": [("P001", 5, 4), ("P002", 7, 1), ("P003", 9, 2)],
    "val_unseen": [("P004", 1, 4), ("P004", 2, 2), ("P004", 3, 5)],
    "test_seen": [("P001", 6, 2), ("P001", 7, 5), ("P001", 8, 3),
                  ("P002", 8, 5), ("P002", 9, 2), ("P002", 10, 1),
                  ("P003", 5, 4), ("P003", 10, 4)],
    "test_unseen": [("P005", 4, 1), ("P005", 6, 3), ("P005", 9, 5), ("P005", 10, 4)],
}


def records(split: str) -> list[dict]:
    out = []
    for user, image, rating in RATINGS[split]:
        stem = f"img_{image:03d}"
        out.append({"participant_id": user, "rating": rating,
                    "image_path": f"./images/{stem}.png", "image_metadata": IMAGES[stem],
                    "participant_metadata": USERS[user]})
    return out


def main(out: Path = HERE) -> None:
    folder = out / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    for split in RATINGS:
        text = json.dumps(records(split), indent=1, sort_keys=True) + "\n"
        (folder / f"pamela_{split}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
