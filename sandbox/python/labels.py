"""The labels a classifier returned, checked and encoded: one label per
row, each a str, int, float, bool or None (NaN is None), scores numbers.
A result that breaks a rule is a `Verdict` naming the first bad item.
The common shapes (a Series or array of plain values) are checked at C
speed; the item-by-item loop runs only to find what is wrong.
"""

import json


class Verdict(Exception):
    """Ends the child with a non-success status."""

    def __init__(self, status, message, **detail):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


LABEL_TYPES = (str, int, float, bool, type(None))


def validate_output(output, n_rows):
    import numpy as np
    import pandas as pd

    scores = None
    if isinstance(output, dict):
        extra = set(output) - {"labels", "scores"}
        if "labels" not in output or extra:
            raise Verdict(
                "invalid_output",
                "a dict result must be {'labels': [...], 'scores': [...]}"
                + (f"; unexpected keys: {sorted(map(str, extra))}" if extra else "; 'labels' is missing"),
                reason="bad_dict",
            )
        labels = to_label_list(output["labels"], n_rows, "labels", np, pd)
        if output.get("scores") is not None:
            raw = to_label_list(output["scores"], n_rows, "scores", np, pd)
            if set(map(type, raw)) <= {int, float, type(None)}:
                return labels, [None if s is None else float(s) for s in raw]
            scores = []
            for i, s in enumerate(raw):
                if isinstance(s, bool) or not isinstance(s, (int, float)) and s is not None:
                    raise Verdict(
                        "invalid_output",
                        f"scores[{i}] is {type(s).__name__} {s!r}; scores must be numbers",
                        reason="bad_score_type",
                        index=i,
                    )
                scores.append(None if s is None else float(s))
        return labels, scores
    labels = to_label_list(output, n_rows, "the result", np, pd)
    return labels, scores


def to_label_list(value, n_rows, what, np, pd):
    if isinstance(value, pd.DataFrame):
        raise Verdict(
            "invalid_output",
            f"{what} is a DataFrame with {value.shape[1]} columns; return one label per row "
            "(a list, numpy array or Series), e.g. df['col'] or a list",
            reason="dataframe",
        )
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise Verdict(
            "invalid_output",
            f"{what} is a {value.ndim}-dimensional array of shape {value.shape}; return a 1-dimensional array with one label per row",
            reason="bad_shape",
        )
    if isinstance(value, (pd.Series, np.ndarray)):
        items = _finite_floats(value, np, pd) if len(value) == n_rows else None
        if items is not None:
            return items
        items = value.tolist()
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif value is None:
        raise Verdict(
            "invalid_output",
            f"{what} is None: did the function forget to `return` the labels?",
            reason="none",
        )
    else:
        raise Verdict(
            "invalid_output",
            f"{what} is a {type(value).__name__}; return a list, tuple, numpy array or pandas Series "
            "with one label per row, or {'labels': [...], 'scores': [...]}",
            reason="bad_type",
        )
    if len(items) != n_rows:
        raise Verdict(
            "invalid_output",
            f"{what} has {len(items)} items but the query returned {n_rows} rows; return exactly one label per row",
            reason="wrong_length",
            expected=n_rows,
            got=len(items),
        )
    if _plain(items):
        return items
    out = []
    for i, x in enumerate(items):
        if isinstance(x, np.generic):
            x = x.item()
        if x is pd.NA or x is pd.NaT:
            x = None
        if isinstance(x, float) and x != x:
            x = None  # NaN is "no label"
        if not isinstance(x, LABEL_TYPES):
            raise Verdict(
                "invalid_output",
                f"{what}[{i}] is a {type(x).__name__} ({_short_repr(x)}); labels must be str, int, float, bool or None",
                reason="bad_label_type",
                index=i,
            )
        if isinstance(x, float) and x in (float("inf"), float("-inf")):
            raise Verdict(
                "invalid_output",
                f"{what}[{i}] is {x}; infinite numbers cannot be returned",
                reason="infinite",
                index=i,
            )
        if isinstance(x, str):
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Verdict(
                    "invalid_output",
                    f"{what}[{i}] is not valid Unicode text: {e.reason} at character {e.start} "
                    f"({_short_repr(x[e.start : e.end])}); labels must be text that UTF-8 can encode",
                    reason="not_unicode",
                    index=i,
                ) from None
        out.append(x)
    return out


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))


def _plain(items):
    """The common case, checked at C speed: every item exactly a str, int,
    bool or None (no NaN or infinity, no numpy scalar to unwrap) and the
    text UTF-8 can encode. Anything else takes the item-by-item loop, which
    names the first bad item."""
    types = set(map(type, items))
    if not types <= _PLAIN_TYPES:
        return False
    if str in types:
        text = items if types == {str} else [x for x in items if type(x) is str]
        try:
            "".join(text).encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _finite_floats(value, np, pd):
    """A float array or Series as a list, NaN as None; None when it is no
    plain float column of at most 64 bits (a masked array, a longdouble, a
    nullable dtype) or holds an infinity: the loop handles those."""
    dtype = getattr(value, "dtype", None)
    if type(value) not in (np.ndarray, pd.Series):
        return None
    if not isinstance(dtype, np.dtype) or dtype.kind != "f" or dtype.itemsize > 8:
        return None
    a = np.asarray(value)
    if np.isinf(a).any():
        return None
    items = a.tolist()
    for i in np.flatnonzero(np.isnan(a)).tolist():
        items[i] = None
    return items


def encode_labels(labels, scores):
    """The labels and scores as JSON, once (they may be a million): ASCII
    escapes keep it valid whatever the text, and its length is what the
    policy's max_output_bytes bounds."""
    return (
        json.dumps(labels, allow_nan=False).encode("ascii"),
        json.dumps(scores, allow_nan=False).encode("ascii"),
    )


def _short_repr(x):
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."
