"""The child inside the sandbox: `child_main` runs `enter.enter` (the
sandbox, step by step), then reads the payload, builds the DataFrame, runs
the user's code, checks the labels and writes one JSON result frame. No
harness module is imported lazily: the landlocked child cannot read them.
"""

import errno
import json
import os
import resource
import struct
import sys
import time

import enter

# Errors are read by people and LLMs: keep them short.
MAX_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 8000
USER_FILENAME = "<classifier>"

# The child decides success, syntax_error, missing_entrypoint, runtime_error,
# invalid_output, memory_limit (any allocation failure), output_limit; the server adds
# what only it can see (timeouts, kills by signal, sql_*).
SUCCESS = "success"


class Capture:
    """A text stream that keeps the first `limit` bytes and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.size = 0
        self.truncated = False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.size
        if room > 0:
            b = s.encode("utf-8", "replace")
            if len(b) > room:
                b = b[:room]
                self.truncated = True
            self.parts.append(b)
            self.size += len(b)
        elif s:
            self.truncated = True
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    @property
    def encoding(self):
        return "utf-8"

    def getvalue(self):
        return b"".join(self.parts).decode("utf-8", "replace")


class Verdict(Exception):
    """Ends the child with a non-success status."""

    def __init__(self, status, message, **detail):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def child_main(zygote, req, in_fd, out_fd):
    """Runs in the forked child. Never returns: the process ends in _exit."""
    code = 0
    ctx = enter.Context(zygote, req, in_fd, out_fd)
    try:
        result = run_child(ctx)
    except MemoryError:
        # The rows themselves did not fit (reading or converting them).
        result = {
            "status": "memory_limit",
            "error": {"message": "the query's rows did not fit in memory while loading them into a DataFrame"},
        }
    except BaseException as e:  # noqa: BLE001 - the harness must always answer
        result = {"status": "internal_error", "error": {"message": f"harness: {type(e).__name__}: {e}"}}
        code = 70
    # The result pipe as the sandbox entry left it (renumbered if it was 0-2).
    out_fd = ctx.out_fd
    try:
        write_result(out_fd, result, req)
    except BaseException:  # noqa: BLE001
        code = 71
    # Close the result pipe before _exit: the parent sees EOF before this
    # process's memory teardown, which is the slow part of exiting.
    try:
        os.close(out_fd)
    except OSError:
        pass
    os._exit(code)


def write_result(out_fd, result, req):
    # Labels were checked; elsewhere (a traceback, a message) a lone
    # surrogate becomes "?" rather than an unreadable frame.
    data = json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8", "replace")
    view = memoryview(data)
    while view:
        n = os.write(out_fd, view)
        view = view[n:]


def run_child(ctx):
    req = ctx.req
    timings = ctx.timings
    t0 = time.monotonic()

    # Into the sandbox, step by step (enter.STEPS).
    enter.enter(ctx)
    in_fd = ctx.in_fd

    # Read the request.
    payload = read_all(in_fd)
    os.close(in_fd)
    (code_len,) = struct.unpack_from("<I", payload, 0)
    source = bytes(payload[4 : 4 + code_len]).decode("utf-8")
    arrow = memoryview(payload)[4 + code_len :]
    timings["read_ms"] = (time.monotonic() - t0) * 1000.0

    stdout = Capture(int(req["max_stdout_bytes"]))
    stderr = Capture(int(req["max_stderr_bytes"]))
    result = {"status": SUCCESS}
    try:
        t1 = time.monotonic()
        df = to_dataframe(arrow)
        _COLUMNS[:] = [str(c) for c in df.columns]
        timings["frame_ms"] = (time.monotonic() - t1) * 1000.0
        t2 = time.monotonic()
        output = run_user_code(source, req.get("entrypoint") or "classify", df, stdout, stderr)
        timings["user_ms"] = (time.monotonic() - t2) * 1000.0
        labels, scores = validate_output(output, len(df))
        result["predictions"] = labels
        result["scores"] = scores
    except Verdict as v:
        result = {"status": v.status, "error": {"message": v.message, **v.detail}}
    result["stdout"] = stdout.getvalue()
    result["stderr"] = stderr.getvalue()
    result["stdout_truncated"] = stdout.truncated
    result["stderr_truncated"] = stderr.truncated
    result["timings"] = timings
    ru = resource.getrusage(resource.RUSAGE_SELF)
    result["usage"] = {"cpu_ms": int((ru.ru_utime + ru.ru_stime) * 1000), "maxrss_kb": ru.ru_maxrss}

    if result["status"] == SUCCESS:
        size = len(json.dumps({"p": result["predictions"], "s": result["scores"]}, allow_nan=False))
        limit = int(req["max_output_bytes"])
        if size > limit:
            result = {
                "status": "output_limit",
                "error": {
                    "message": f"the result is {size} bytes, over the policy's limit of {limit} bytes; "
                    "return one short label per row (or fewer scores)",
                    "limit_bytes": limit,
                },
                **{k: result[k] for k in ("stdout", "stderr", "stdout_truncated", "stderr_truncated", "timings", "usage")},
            }
    return result


def read_all(fd):
    buf = bytearray()
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return buf
        buf += chunk


def to_dataframe(arrow):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc

    # No Arrow thread pool: the zygote runs this once at warm-up and must
    # stay single-threaded.
    options = pyarrow.ipc.IpcReadOptions(use_threads=False)
    table = pyarrow.ipc.open_stream(pa.py_buffer(arrow), options=options).read_all()
    df = table.to_pandas(use_threads=False)
    # Integer columns with NULLs stay integers (pandas' nullable dtypes)
    # instead of silently becoming float; decimals keep their digits.
    for i, field in enumerate(table.schema):
        col = table.column(i)
        meta = field.metadata or {}
        if meta.get(b"sluice:type") == b"decimal":
            import decimal

            df[field.name] = pd.Series(
                [None if v is None else decimal.Decimal(v) for v in col.to_pylist()], dtype=object, index=df.index
            )
            continue
        if pa.types.is_boolean(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get, use_threads=False)
        elif pa.types.is_integer(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper=_nullable_int_mapper(pd, pa), use_threads=False)
    return df


def _nullable_int_mapper(pd, pa):
    names = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    return {getattr(pa, n)(): getattr(pd, n.capitalize().replace("Uint", "UInt") + "Dtype")() for n in names}.get


def run_user_code(source, entrypoint, df, stdout, stderr):
    import builtins
    import linecache
    import warnings

    # Tracebacks show the user's lines.
    linecache.cache[USER_FILENAME] = (len(source), None, source.splitlines(True), USER_FILENAME)
    try:
        compiled = compile(source, USER_FILENAME, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise Verdict(
            "syntax_error",
            f"{e.msg} (line {e.lineno}, column {e.offset})",
            line=e.lineno,
            offset=e.offset,
            text=(e.text or "").rstrip("\n") or None,
        ) from None
    except ValueError as e:  # e.g. source code string cannot contain null bytes
        raise Verdict("syntax_error", str(e), line=None, offset=None) from None

    # Not __main__: an `if __name__ == "__main__":` demo block does not run.
    namespace = {"__name__": "classifier", "__builtins__": builtins, "__file__": USER_FILENAME}
    old_out, old_err = sys.stdout, sys.stderr
    # Warnings go to sys.stderr at the time they are shown: captured too.
    sys.stdout, sys.stderr = stdout, stderr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                exec(compiled, namespace)
            except BaseException as e:  # noqa: BLE001
                raise user_exception(e, "while loading the code (module level)") from None
            fn = namespace.get(entrypoint)
            if not callable(fn):
                defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("__") and getattr(v, "__module__", None) == "classifier")
                hint = f"; functions defined: {', '.join(defined)}" if defined else "; the code defines no functions"
                what = "is not defined" if fn is None else f"is a {type(fn).__name__}, not a function"
                raise Verdict(
                    "missing_entrypoint",
                    f"`{entrypoint}` {what}{hint}. Define `def {entrypoint}(df):` returning one label per row",
                    entrypoint=entrypoint,
                    defined=defined,
                )
            try:
                return fn(df)
            except BaseException as e:  # noqa: BLE001
                raise user_exception(e, f"in {entrypoint}(df)") from None
    finally:
        sys.stdout.flush()
        sys.stdout, sys.stderr = old_out, old_err


def _out_of_memory(e):
    """Why `e` is an allocation failure, if it is: a MemoryError or an ENOMEM OSError
    (mmap, a library's allocator), itself or what it was raised `from`."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or (isinstance(e, OSError) and e.errno == errno.ENOMEM):
            return type(e).__name__ + ("" if isinstance(e, MemoryError) else f": {e.strerror}")
        e = e.__cause__


def user_exception(e, where):
    import traceback

    if isinstance(e, Verdict):
        return e
    short = _out_of_memory(e)
    if short is not None:
        return Verdict("memory_limit", f"the code ran out of memory {where} ({short})")
    # Only the user's frames: none of the harness modules' (every file of the
    # runtime directory) nor the libraries'.
    frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == USER_FILENAME]
    line = frames[-1].lineno if frames else None
    tb = "".join(traceback.format_list(frames)) if frames else ""
    tb = "Traceback (most recent call last, your code only):\n" + tb + "".join(
        traceback.format_exception_only(type(e), e)
    )
    msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    msg = _clip(msg, MAX_MESSAGE_CHARS)
    tb = _clip(tb, MAX_TRACEBACK_CHARS)
    if isinstance(e, PermissionError):
        return Verdict(
            "security_violation",
            f"the sandbox denied an operation {where}: {msg}",
            type=type(e).__name__,
            line=line,
            traceback=tb,
        )
    if isinstance(e, KeyError) and _COLUMNS and e.args and isinstance(e.args[0], str) and e.args[0] not in _COLUMNS:
        msg = (
            f"KeyError: column {e.args[0]!r} does not exist {where}"
            + (f" at line {line}" if line else "")
            + f"; the DataFrame's columns are: {', '.join(map(str, _COLUMNS))}"
        )
        return Verdict("runtime_error", _clip(msg, MAX_MESSAGE_CHARS), type="KeyError", line=line, traceback=tb)
    if isinstance(e, SystemExit):
        msg = f"the code called exit({e.code!r}) {where}; return the labels instead"
    elif isinstance(e, KeyboardInterrupt):
        msg = f"KeyboardInterrupt {where}"
    else:
        # Name the function the line is in when it is a helper of the code's.
        inner = next((f.name for f in reversed(frames) if not f.name.startswith("<")), None)
        at = f" at line {line}" if line else ""
        msg = f"{msg} in {inner}(){at}, called {where}" if inner and f"in {inner}(" not in where else f"{msg} {where}{at}"
    return Verdict("runtime_error", msg, type=type(e).__name__, line=line, traceback=tb)


LABEL_TYPES = (str, int, float, bool, type(None))
_COLUMNS = []  # the current request's column names, for error hints


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
    if isinstance(value, pd.Series):
        items = value.tolist()
    elif isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise Verdict(
                "invalid_output",
                f"{what} is a {value.ndim}-dimensional array of shape {value.shape}; return a 1-dimensional array with one label per row",
                reason="bad_shape",
            )
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


def _clip(s, limit):
    if len(s) <= limit:
        return s
    return s[: limit - 40] + f" … [{len(s) - limit + 40} more characters]"


def _short_repr(x):
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."
