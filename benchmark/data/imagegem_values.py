"""The value kinds of the ImageGem import: each raw column checked and converted to its type.

Why apart from the import: these are the rules a source column must follow (an id, a
date, a 0/1 flag, a ', '-separated list ...) and the one error each breaks them with,
naming the file, the row and the rule; :mod:`benchmark.data.imagegem` only says which
column is of which kind (:data:`KINDS`) and converts it (:data:`CONVERTERS`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmark.errors import DataError
from benchmark.schema import TIMESTAMP

_TRUE = ["1", "1.0", "true", "t", "yes", "y"]
_FALSE = ["0", "0.0", "false", "f", "no", "n", ""]

def _is_str(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_str(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_num(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_list_of_str(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
        _is_str(t.value_type) or pa.types.is_null(t.value_type)
    )


KINDS: dict[str, tuple[str, Callable[[pa.DataType], bool]]] = {
    "id": ("integer or string ids", lambda t: _is_str(t) or _is_num(t) or pa.types.is_null(t)),
    "str": ("strings", lambda t: _is_str(t) or pa.types.is_null(t)),
    "int": ("numbers", lambda t: _is_num(t) or _is_str(t) or pa.types.is_boolean(t)
            or pa.types.is_null(t)),
    "float": ("numbers", lambda t: _is_num(t) or _is_str(t) or pa.types.is_null(t)),
    "flag": ("0/1 or booleans", lambda t: _is_num(t) or _is_str(t) or pa.types.is_boolean(t)
             or pa.types.is_null(t)),
    "label": ("booleans, numbers or strings", lambda t: _is_num(t) or _is_str(t)
              or pa.types.is_boolean(t) or pa.types.is_null(t)),
    "date": ("date strings like '2023-09-22 23:51:39' or timestamps",
             lambda t: _is_str(t) or pa.types.is_timestamp(t) or pa.types.is_date(t)
             or pa.types.is_null(t)),
    "list": ("', '-separated strings or lists of strings",
             lambda t: _is_str(t) or _is_list_of_str(t) or pa.types.is_null(t)),
}


def _strings(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Any string-like (or null) column as a plain ``string`` array."""
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    out = pc.cast(col, pa.string())
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def _first_bad(bad: np.ndarray) -> int | None:
    rows = np.flatnonzero(bad)
    return int(rows[0]) if len(rows) else None


def _to_id(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    """Ids as strings; integral floats (a pandas export with NaN) lose their '.0'."""
    if pa.types.is_floating(col.type):
        arr = col.combine_chunks()
        bad = _first_bad(pc.fill_null(pc.not_equal(pc.floor(arr), arr), False).to_numpy(
            zero_copy_only=False))
        if bad is not None:
            raise DataError(f"column {name!r}: id {arr[bad].as_py()!r} is not an integer",
                            path=str(path), row=bad + 1, rule="ids are integers or strings")
        col = pc.cast(arr, pa.int64())
    if pa.types.is_integer(col.type):
        return _strings(col)
    arr = pc.utf8_trim_whitespace(_strings(col))
    if pc.any(pc.match_substring(arr, ".")).as_py():
        arr = pc.replace_substring_regex(arr, pattern=r"^(-?\d+)\.0+$", replacement=r"\1")
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def _to_str(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    return _strings(col)


def _to_label(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    """Booleans stay booleans; any other label becomes a string."""
    if pa.types.is_boolean(col.type):
        return col.combine_chunks()
    return _strings(col)


def _to_number(col: pa.ChunkedArray, path: Path, name: str, typ: pa.DataType) -> pa.Array:
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), typ)
    if _is_str(col.type):
        text = pd.Series(_strings(col).to_numpy(zero_copy_only=False), dtype=object)
        given = text.notna() & text.str.strip().ne("")
        num = pd.to_numeric(text.where(given), errors="coerce")
        bad = _first_bad((given & num.isna()).to_numpy())
        if bad is not None:
            raise DataError(f"column {name!r}: {text[bad]!r} is not a number",
                            path=str(path), row=bad + 1, rule=f"{name} holds numbers")
        arr = pa.array(num.to_numpy(dtype=np.float64), pa.float64(), from_pandas=True)
    else:
        arr = col.combine_chunks()
        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return pc.cast(arr, typ, safe=False)


def _to_int(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    return _to_number(col, path, name, pa.int64())


def _to_float(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    return _to_number(col, path, name, pa.float64())


def _to_flag(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    """``primary`` as a nullable boolean: 1/0, true/false in any spelling."""
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.bool_())
    if pa.types.is_boolean(t):
        return col.combine_chunks()
    if _is_num(t):
        return pc.not_equal(col.combine_chunks(), 0)
    text = pc.utf8_lower(pc.utf8_trim_whitespace(_strings(col)))
    yes = pc.is_in(text, value_set=pa.array(_TRUE))
    no = pc.is_in(text, value_set=pa.array(_FALSE))
    bad = _first_bad(pc.and_(pc.is_valid(text), pc.invert(pc.or_(yes, no))).to_numpy(
        zero_copy_only=False))
    if bad is not None:
        raise DataError(f"column {name!r}: {text[bad].as_py()!r} is not a flag",
                        path=str(path), row=bad + 1, rule=f"{name} is 0/1 or true/false")
    return pc.if_else(pc.is_valid(text), yes, pa.scalar(None, pa.bool_()))


def _to_date(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    """Dates as ``timestamp[s]`` (naive UTC); the release's '2023-09-22 23:51:39' is
    parsed fast, other ISO 8601 forms ('...T23:51:39.000Z') through pandas."""
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), TIMESTAMP)
    if pa.types.is_timestamp(t):
        arr = col.combine_chunks()
        if t.tz is not None:
            arr = arr.view(pa.timestamp(t.unit))  # storage is UTC
        return pc.cast(arr, TIMESTAMP, safe=False)
    if pa.types.is_date(t):
        return pc.cast(col.combine_chunks(), TIMESTAMP)
    text = pc.utf8_trim_whitespace(_strings(col))
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    fast = pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    slow_mask = pc.and_(pc.is_valid(text), pc.is_null(fast)).to_numpy(zero_copy_only=False)
    if not slow_mask.any():
        return fast
    values = text.to_numpy(zero_copy_only=False)
    parsed = pd.to_datetime(
        pd.Series(np.where(slow_mask, values, None), dtype=object),
        format="ISO8601", utc=True, errors="coerce",
    )
    bad = _first_bad(slow_mask & parsed.isna().to_numpy())
    if bad is not None:
        raise DataError(
            f"column {name!r}: cannot parse date {values[bad]!r}",
            path=str(path),
            row=bad + 1,
            rule="dates look like '2023-09-22 23:51:39' (ISO 8601)",
        )
    seconds = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[s]")
    slow = pa.array(seconds, TIMESTAMP, mask=~slow_mask)
    return pc.coalesce(fast, slow)


def _to_list(col: pa.ChunkedArray, path: Path, name: str) -> pa.Array:
    """', '-separated text (or lists) as ``list<string>``: no empty items, null -> []."""
    t = col.type
    if pa.types.is_null(t):
        lists = pa.array([None] * len(col), pa.list_(pa.string()))
    elif _is_str(t):
        text = pc.utf8_trim_whitespace(_strings(col))
        lists = pc.split_pattern_regex(text, pattern=r"\s*,\s*")
    else:
        lists = pc.cast(col, pa.list_(pa.string())).combine_chunks()
    flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    parents = pc.list_parent_indices(lists)
    keep = pc.fill_null(pc.not_equal(flat, ""), False)
    counts = np.bincount(parents.filter(keep).to_numpy(), minlength=len(lists))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), flat.filter(keep))


CONVERTERS: dict[str, Callable[[pa.ChunkedArray, Path, str], pa.Array]] = {
    "id": _to_id,
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "flag": _to_flag,
    "label": _to_label,
    "date": _to_date,
    "list": _to_list,
}


