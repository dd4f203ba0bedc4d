"""The rows without pyarrow: a reader of the Arrow IPC streams sluice's
server writes, in the standard library and numpy only, for environments
that do not install pyarrow (runner.to_dataframe picks it then).

It reads exactly what the server's encoder produces (src/sql/encode.rs):
one schema, record batches without compression or dictionaries, and the
column types null, bool, int64, uint64, float64, utf8, binary, date32,
time64[us] and timestamp[us] (with or without a time zone). Anything else
is refused with a message, never guessed. The DataFrame it builds matches
pyarrow's `to_pandas()` as the harness uses it: numbers as numpy columns
(nullable integers and booleans as pandas' nullable dtypes, missing floats
as NaN), text and bytes as Python objects, dates and times as
`datetime.date` / `datetime.time`, timestamps as `datetime64[us]`.

Flatbuffers are read by hand (Message.fbs / Schema.fbs): a table starts
with a signed offset back to its vtable; the vtable holds each field's
offset in the table (0: absent, so the schema's default applies).
"""

import datetime
import struct

# Message.header and Field.type union tags (Message.fbs, Schema.fbs).
_SCHEMA, _RECORD_BATCH = 1, 3
_NULL, _INT, _FLOAT, _BINARY, _UTF8, _BOOL, _DATE, _TIME, _TIMESTAMP = 1, 2, 3, 4, 5, 6, 8, 9, 10
_MICROSECOND = 2


class ArrowFormatError(ValueError):
    pass


class _Table:
    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, self.vt)[0]

    def _field(self, i):
        at = 4 + 2 * i
        if at >= self.vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + at)[0]

    def scalar(self, i, fmt, default=0):
        off = self._field(i)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def _target(self, i):
        off = self._field(i)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, i):
        at = self._target(i)
        return None if at is None else _Table(self.buf, at)

    def string(self, i):
        at = self._target(i)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return bytes(self.buf[at + 4 : at + 4 + n]).decode("utf-8")

    def vector(self, i):
        """(position of the first element, element count)."""
        at = self._target(i)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, i):
        start, n = self.vector(i)
        out = []
        for k in range(n):
            at = start + 4 * k
            out.append(_Table(self.buf, at + struct.unpack_from("<I", self.buf, at)[0]))
        return out


def _messages(data):
    """Each message of the stream: (Message table, body memoryview)."""
    view = memoryview(data)
    pos = 0
    while pos + 4 <= len(view):
        (size,) = struct.unpack_from("<i", view, pos)
        pos += 4
        if size == -1:  # continuation marker, then the length
            (size,) = struct.unpack_from("<i", view, pos)
            pos += 4
        if size == 0:  # end of stream
            return
        meta = bytes(view[pos : pos + size])
        pos += size
        msg = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        body_len = msg.scalar(3, "q")
        yield msg, view[pos : pos + body_len]
        pos += body_len


def _field_kind(field):
    """(name, kind, timezone, metadata) of a Schema Field."""
    name = field.string(0) or ""
    type_type = field.scalar(2, "B")
    t = field.table(3)
    if t is None and type_type != _NULL:
        raise ArrowFormatError(f"column {name!r}: no type")
    tz = None
    if type_type == _NULL:
        kind = "null"
    elif type_type == _INT:
        width, signed = t.scalar(0, "i"), t.scalar(1, "?", False)
        if width != 64:
            raise ArrowFormatError(f"column {name!r}: {width}-bit integers are not sent by sluice")
        kind = "int64" if signed else "uint64"
    elif type_type == _FLOAT:
        if t.scalar(0, "h") != 2:
            raise ArrowFormatError(f"column {name!r}: only 64-bit floats are sent by sluice")
        kind = "float64"
    elif type_type in (_BINARY, _UTF8, _BOOL):
        kind = {_BINARY: "binary", _UTF8: "utf8", _BOOL: "bool"}[type_type]
    elif type_type == _DATE:
        if t.scalar(0, "h", 1) != 0:
            raise ArrowFormatError(f"column {name!r}: only date32 (days) is sent by sluice")
        kind = "date32"
    elif type_type == _TIME:
        if t.scalar(0, "h", 1) != _MICROSECOND or t.scalar(1, "i", 32) != 64:
            raise ArrowFormatError(f"column {name!r}: only time64[us] is sent by sluice")
        kind = "time64us"
    elif type_type == _TIMESTAMP:
        if t.scalar(0, "h") != _MICROSECOND:
            raise ArrowFormatError(f"column {name!r}: only timestamp[us] is sent by sluice")
        kind, tz = "timestamp_us", t.string(1)
    else:
        raise ArrowFormatError(f"column {name!r}: Arrow type {type_type} is not sent by sluice")
    meta = {}
    for kv in field.tables(6):
        meta[kv.string(0)] = kv.string(1)
    return name, kind, tz, meta


def _structs(table, i):
    """A vector of two-int64 structs (FieldNode, Buffer)."""
    start, n = table.vector(i)
    return [struct.unpack_from("<qq", table.buf, start + 16 * k) for k in range(n)]


def _valid(np, body, buf, length, null_count):
    if null_count == 0:
        return None
    offset, size = buf
    bits = np.frombuffer(body, np.uint8, count=size, offset=offset)
    return np.unpackbits(bits, bitorder="little", count=length).astype(bool)


def _column(np, kind, body, node, bufs):
    """One column of one batch as (values, valid mask or None); `bufs` is
    consumed from the front (the IPC order)."""
    length, null_count = node
    if kind == "null":
        return np.full(length, None, dtype=object), np.zeros(length, bool)
    valid = _valid(np, body, bufs.pop(0), length, null_count)
    if kind in ("utf8", "binary"):
        off_at, _ = bufs.pop(0)
        data_at, data_len = bufs.pop(0)
        offsets = np.frombuffer(body, np.int32, count=length + 1, offset=off_at).tolist()
        data = bytes(body[data_at : data_at + data_len])
        if kind == "utf8" and data.isascii():
            # One decode; byte offsets are character offsets.
            data = data.decode("ascii")
        elif kind == "utf8":
            data = [data[a:b].decode("utf-8") for a, b in zip(offsets, offsets[1:])]
            offsets = None
        out = np.empty(length, dtype=object)
        out[:] = data if offsets is None else [data[a:b] for a, b in zip(offsets, offsets[1:])]
        if valid is not None:
            out[~valid] = None
        return out, valid
    at, size = bufs.pop(0)
    if kind == "bool":
        bits = np.frombuffer(body, np.uint8, count=size, offset=at)
        return np.unpackbits(bits, bitorder="little", count=length).astype(bool), valid
    dtype = {"int64": np.int64, "uint64": np.uint64, "float64": np.float64, "date32": np.int32}
    dtype.update(time64us=np.int64, timestamp_us=np.int64)
    return np.frombuffer(body, dtype[kind], count=length, offset=at).copy(), valid


def _series(np, pd, kind, tz, values, valid):
    missing = None if valid is None else ~valid
    if kind in ("int64", "uint64", "bool"):
        if missing is None:
            return pd.Series(values)
        array = pd.arrays.BooleanArray if kind == "bool" else pd.arrays.IntegerArray
        return pd.Series(array(values, missing))
    if kind == "float64":
        if missing is not None:
            values[missing] = np.nan
        return pd.Series(values)
    if kind == "date32":
        epoch = datetime.date(1970, 1, 1)
        out = [epoch + datetime.timedelta(days=int(d)) for d in values]
    elif kind == "time64us":
        out = [(datetime.datetime.min + datetime.timedelta(microseconds=int(us))).time() for us in values]
    elif kind == "timestamp_us":
        stamps = values.view("datetime64[us]").copy()
        if missing is not None:
            stamps[missing] = np.datetime64("NaT")
        s = pd.Series(stamps)
        return s.dt.tz_localize("UTC").dt.tz_convert(tz) if tz else s
    elif kind == "utf8":
        # pandas picks its own text dtype (`str` from pandas 3, objects before).
        return pd.Series(values, dtype="str" if int(pd.__version__.split(".")[0]) >= 3 else object)
    else:  # bytes, nulls: objects already
        return pd.Series(values, dtype=object)
    if missing is not None:
        out = [None if m else v for v, m in zip(out, missing)]
    return pd.Series(out, dtype=object)


def to_dataframe(data):
    """The DataFrame of an Arrow IPC stream (bytes, memoryview or mmap),
    and each column's field metadata (for the harness's decimal handling)."""
    import numpy as np
    import pandas as pd

    fields = None
    parts = None
    rows = 0
    for msg, body in _messages(data):
        header_type, header = msg.scalar(1, "B"), msg.table(2)
        if header_type == _SCHEMA:
            fields = [_field_kind(f) for f in header.tables(1)]
            parts = [[] for _ in fields]
        elif header_type == _RECORD_BATCH:
            if fields is None:
                raise ArrowFormatError("a record batch before the schema")
            if header.table(3) is not None:
                raise ArrowFormatError("compressed record batches are not sent by sluice")
            rows += header.scalar(0, "q")
            nodes, bufs = _structs(header, 1), _structs(header, 2)
            if len(nodes) != len(fields):
                raise ArrowFormatError(f"{len(nodes)} columns in a batch of a {len(fields)}-column schema")
            for i, (_, kind, _, _) in enumerate(fields):
                parts[i].append(_column(np, kind, body, nodes[i], bufs))
        else:
            raise ArrowFormatError(f"message type {header_type} is not sent by sluice")
    if fields is None:
        raise ArrowFormatError("no schema in the rows")
    columns = []
    for (_, kind, tz, _), chunks in zip(fields, parts):
        if chunks:
            values = np.concatenate([v for v, _ in chunks])
            masks = [np.ones(len(v), bool) if m is None else m for v, m in chunks]
            valid = None if all(m is None for _, m in chunks) else np.concatenate(masks)
        else:
            dtype = {"utf8": object, "binary": object, "null": object, "float64": np.float64, "bool": bool}
            values, valid = np.empty(0, dtype.get(kind, np.uint64 if kind == "uint64" else np.int64)), None
        columns.append(_series(np, pd, kind, tz, values, valid))
    # By position: a query may return two columns of one name.
    # (A query may also return rows without columns: the count is the batches'.)
    df = pd.DataFrame(dict(enumerate(columns)), index=pd.RangeIndex(rows))
    df.columns = [name for name, _, _, _ in fields]
    return df, [meta for _, _, _, meta in fields]
