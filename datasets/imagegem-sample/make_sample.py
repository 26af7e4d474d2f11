"""Write the hand-made ImageGem sample in the release's layout (deterministic).

Run from the repository root::

    .venv/bin/python datasets/imagegem-sample/make_sample.py

The key facts (who used which LoRA when, which file row is primary) are written
out by hand below so the tests can check exact counts; the remaining columns are
filled with plausible invented values derived from the ids by hashing, so the
output is byte-for-byte the same on every run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# the release's exact column lists (SEEDS.md), as the loader checks them
from benchmark.data.imagegem import IMAGES_COLUMNS as IMAGE_COLUMNS
from benchmark.data.imagegem import MODELS_COLUMNS as MODEL_COLUMNS

HERE = Path(__file__).resolve().parent


def _hex(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _num(text: str, mod: int) -> int:
    return int(_hex(text, 12), 16) % mod


_B83 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"


def _blurhash(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "U" + "".join(_B83[b % 83] for b in digest[:35])


#: 8 users, anonymised like the release (a hex hash)
USERS = [_hex(f"gembench-sample-user-{i}", 32) for i in range(8)]

#: 10 LoRA versions: (modelVersionId, modelId, modelName, versionName, baseModel,
#: uploader index, publishedAt, tags, trainedWords)
VERSIONS = [
    (201001, 110001, "Watercolor Dreams", "v1.0", "SD 1.5", 0, "2023-03-02T10:15:00.000Z",
     "style, watercolor, painting", "watercolor, wet paper"),
    (201002, 110001, "Watercolor Dreams", "v2.0", "SD 1.5", 0, "2023-05-11T08:00:00.000Z",
     "style, watercolor, painting", "watercolor"),
    (201003, 110002, "Cyberpunk Neon", "v1", "SDXL 1.0", 1, "2023-06-20T19:42:10.000Z",
     "style, cyberpunk, neon, city", "cyberpunk, neon lights"),
    (201004, 110003, "Ghibli Scenery", "v3", "SD 1.5", 2, "2023-04-01T12:00:00.000Z",
     "anime, landscape, scenery", "ghibli style"),
    (201005, 110004, "Pony Cel Shading", "v1.0", "Pony", 3, "2023-08-03T07:30:00.000Z",
     "anime, cel shading, style", "cel shading"),
    (201006, 110005, "Film Grain XL", "v1.1", "SDXL 1.0", 1, "2023-07-14T16:05:00.000Z",
     "photography, film, grain", ""),
    (201007, 110006, "Ink Sketch", "v2", "SD 1.5", 4, "2023-02-18T09:09:09.000Z",
     "style, ink, sketch, monochrome", "ink sketch, lineart"),
    (201008, 110007, "Pastel Pony", "v1", "Pony", 5, "2023-08-25T21:00:00.000Z",
     "pastel, cute, style", "pastel colors"),
    (201009, 110008, "Retro Anime 90s", "v1.0", "SD 1.5", 2, "2023-01-09T13:37:00.000Z",
     "anime, retro, 1990s", "90s anime, retro"),
    (201010, 110009, "Detail Tweaker XL", "v1.0", "SDXL 1.0", 6, "2023-07-30T11:11:11.000Z",
     "tool, detail, concept", ""),
]

#: which version's second file row comes first and which has no primary file at all
NON_PRIMARY_FIRST = {201004}
NO_PRIMARY = {201010}

#: images: (imageId, user index, LoRA versions used, createdAt). 209999 is a LoRA
#: that the models table does not list.
IMAGES = [
    (5000101, 7, [201001], "2023-09-01 10:00:00"),
    (5000102, 7, [201001], "2023-08-15 09:00:00"),
    (5000103, 7, [201003, 201006], "2023-09-03 12:00:00"),
    (5000104, 7, [201005], "2023-09-05 18:30:00"),
    (5000105, 0, [201001], "2023-09-02 08:15:00"),
    (5000106, 0, [201004, 201009], "2023-09-06 22:45:10"),
    (5000107, 1, [201003], "2023-09-07 11:11:11"),
    (5000108, 1, [201003], "2023-09-08 09:30:00"),
    (5000109, 1, [201002, 201007], "2023-09-09 14:00:00"),
    (5000110, 2, [201004], "2023-09-10 07:00:00"),
    (5000111, 2, [201001], "2023-09-11 19:20:00"),
    (5000112, 2, [201008, 209999], "2023-09-12 23:59:59"),
    (5000113, 3, [209999], "2023-09-13 06:00:00"),
    (5000114, 3, [201005], "2023-09-14 10:10:10"),
    (5000115, 3, [201008], "2023-09-15 15:15:15"),
    (5000116, 3, [201005, 201008], "2023-09-16 16:16:16"),
    (5000117, 4, [201007], "2023-09-17 17:17:17"),
    (5000118, 4, [201010], "2023-09-18 18:18:18"),
    (5000119, 4, [201010, 201006], "2023-09-19 19:19:19"),
    (5000120, 5, [201002], "2023-09-20 20:00:00"),
    (5000121, 5, [201002], "2023-09-21 21:00:00"),
    (5000122, 5, [201002], "2023-09-19 09:00:00"),
    (5000123, 5, [201009], "2023-09-23 23:00:00"),
    (5000124, 6, [201010], "2023-09-24 08:00:00"),
    (5000125, 6, [201003, 201006, 201010], "2023-09-25 12:34:56"),
    (5000126, 7, [201009], "2023-09-26 13:00:00"),
    (5000127, 6, [201004], "2023-09-27 14:00:00"),
    (5000128, 0, [201006], "2023-10-01 09:00:00"),
    (5000129, 1, [201008], "2023-10-02 10:00:00"),
]

#: an exact repeat of one (image, LoRA) row, as scraped data has
DUPLICATE_ROW = (5000109, 201002)

PROMPTS = [
    "masterpiece, best quality, a girl in a watercolor garden, soft light",
    "cyberpunk city street at night, neon signs, rain, reflections",
    "a cozy cottage in green hills, ghibli style, clouds",
    "portrait of a knight, ink sketch, lineart, monochrome",
    "1990s anime screenshot, a boy on a bicycle, sunset",
    "pastel colors, cute cat cafe, kawaii",
    "analog photo of a lighthouse, film grain, 35mm",
    "close-up of a dragon eye, highly detailed, intricate",
]
NEGATIVE = "lowres, bad anatomy, bad hands, text, error, worst quality, jpeg artifacts"
SAMPLERS = ["DPM++ 2M Karras", "Euler a", "DPM++ SDE Karras", "DDIM"]


def image_rows() -> dict[str, list]:
    """The 29 columns of ImageGem-images, one row per (image, LoRA) pair."""
    pairs = [(img, user, lora, created) for img, user, loras, created in IMAGES
             for lora in loras]
    i = next(k for k, p in enumerate(pairs) if (p[0], p[2]) == DUPLICATE_ROW)
    pairs.insert(i + 1, pairs[i])
    cols: dict[str, list] = {name: [] for name in IMAGE_COLUMNS}
    for img, user, lora, created in pairs:
        key = str(img)
        hires = _num(key + "hires", 2) == 1
        size = [(512, 768), (768, 512), (832, 1216), (1024, 1024)][_num(key + "size", 4)]
        values = {
            "imageId": img,
            "modelVersionId": lora,
            "postId": 880000 + img % 1000 // 2,
            "url": f"https://image.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/{_hex(key, 8)}-"
                   f"{_hex(key + 'a', 4)}-{_hex(key + 'b', 4)}-{_hex(key + 'c', 12)}/"
                   f"width={size[0]}/{img}.jpeg",
            "hash": _blurhash(key),
            "nsfw": "Soft" if _num(key + "nsfw", 6) == 0 else "None",
            "browsingLevel": 2 if _num(key + "nsfw", 6) == 0 else 1,
            "type": "image",
            "height": size[1],
            "width": size[0],
            "seed": _num(key + "seed", 2**32),
            "steps": [20, 25, 28, 30, 40][_num(key + "steps", 5)],
            "prompt": PROMPTS[_num(key + "prompt", len(PROMPTS))],
            "negativePrompt": NEGATIVE,
            "sampler": SAMPLERS[_num(key + "sampler", len(SAMPLERS))],
            "cfgScale": [5.0, 6.5, 7.0, 7.5][_num(key + "cfg", 4)],
            "clipSkip": 2.0 if _num(key + "clip", 3) else 1.0,
            "hiresUpscale": 1.5 if hires else None,
            "hiresUpscaler": "4x-UltraSharp" if hires else None,
            "denoisingStrength": 0.45 if hires else None,
            "createdAt": created,
            "comfy": None,
            "cryCount": _num(key + "cry", 2),
            "laughCount": _num(key + "laugh", 3),
            "likeCount": _num(key + "like", 40),
            "dislikeCount": 0,
            "heartCount": _num(key + "heart", 25),
            "commentCount": _num(key + "comment", 4),
            "userHash": USERS[user],
        }
        for name in IMAGE_COLUMNS:
            cols[name].append(values[name])
    return cols


def model_rows() -> dict[str, list]:
    """The 45 columns of ImageGem-models, two file rows per version."""
    cols: dict[str, list] = {name: [] for name in MODEL_COLUMNS}
    file_id = 300000
    for mv, mid, name, vname, base, uploader, published, tags, words in VERSIONS:
        files = [("Model", "SafeTensor", "fp16", 1), ("Training Data", "Other", None, 0)]
        if mv in NON_PRIMARY_FIRST:
            files.reverse()
        if mv in NO_PRIMARY:
            files = [("Model", "SafeTensor", "fp16", 0), ("Model", "SafeTensor", "fp32", 0)]
        slug = name.replace(" ", "_")
        for file_type, fmt, fp, primary in files:
            file_id += 1
            key = f"{mv}-{file_id}"
            ext = "safetensors" if fmt == "SafeTensor" else "zip"
            values = {
                "modelId": mid,
                "modelName": name,
                "modelVersionId": mv,
                "modelVersionName": vname,
                "fileId": file_id,
                "fileName": f"{slug}_{vname}.{ext}" if fp != "fp32" else f"{slug}_fp32.{ext}",
                "modelDescription": f"<p>{name}: a LoRA for {tags.split(', ')[1]} images.</p>",
                "allowNoCredit": True,
                "allowCommercialUse": "{Image,RentCivit}",
                "allowDerivatives": True,
                "allowDifferentLicense": _num(key + "lic", 2) == 1,
                "modelType": "LORA",
                "minor": False,
                "poi": False,
                "modelNsfwLevel": 1,
                "cosmetic": None,
                "tags": tags,
                "publishedAt": published,
                "baseModel": base,
                "baseModelType": "Standard",
                "availability": "Public",
                "modelVersionNsfwLevel": 1,
                "modelVersionDescription": f"<p>{vname}: trained on {20 + mv % 50} images.</p>",
                "trainedWords": words,
                "sizeKB": float(18432 + _num(key + "size", 200000)) / 4,
                "fileType": file_type,
                "fp": fp,
                "format": fmt,
                "pickleScanResult": "Success",
                "pickleScanMessage": "No Pickle imports",
                "virusScanResult": "Success",
                "scannedAt": published.replace("Z", "").replace("T", " ")[:19],
                "hashAutoV1": _hex(key + "v1", 8).upper(),
                "hashAutoV2": _hex(key + "v2", 10).upper(),
                "hashSHA256": _hex(key + "sha").upper(),
                "hashCRC32": _hex(key + "crc", 8).upper(),
                "hashBLAKE3": _hex(key + "blake").upper(),
                "downloadUrl": f"https://civitai.com/api/download/models/{mv}?type={file_type}",
                "primary": primary,
                "downloadCount": 100 + _num(str(mv) + "dl", 5000),
                "ratingCount": _num(str(mv) + "rc", 30),
                "rating": float(3 + _num(str(mv) + "r", 3)),
                "thumbsUpCount": _num(str(mv) + "up", 300),
                "thumbsDownCount": _num(str(mv) + "down", 5),
                "userHash": USERS[uploader],
            }
            for col in MODEL_COLUMNS:
                cols[col].append(values[col])
    return cols


#: arrow types for columns that are all null or need a fixed type
TYPES = {
    "hiresUpscale": pa.float64(),
    "hiresUpscaler": pa.string(),
    "denoisingStrength": pa.float64(),
    "comfy": pa.string(),
    "cosmetic": pa.string(),
    "fp": pa.string(),
    "seed": pa.int64(),
}


def write(table: str, cols: dict[str, list]) -> Path:
    arrays = {k: pa.array(v, TYPES.get(k)) for k, v in cols.items()}
    path = HERE / table / "data" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), path, compression="snappy")
    return path


def main() -> None:
    for table, cols in (("ImageGem-images", image_rows()), ("ImageGem-models", model_rows())):
        path = write(table, cols)
        print(f"{path.relative_to(HERE)}: {len(next(iter(cols.values())))} rows, "
              f"{len(cols)} columns")


if __name__ == "__main__":
    main()
