"""The child inside the sandbox: `child_main` runs `enter.enter` (the
sandbox, step by step) and warms its own request path on rows of its own
(`warm_child`), all before its request exists; then `enter.receive` waits
for the one request (code, limits, the rows' sealed memfd), and the child
maps the rows (pyarrow reads the server's pages in place), builds the
DataFrame, runs the user's code, checks the labels and writes one JSON
result frame. No harness module is imported lazily: the landlocked child
cannot read them.
"""

import errno
import json
import mmap
import os
import resource
import sys
import time

import arrow_lite
import enter
from labels import Verdict, encode_labels, validate_output  # noqa: F401 - zygote.py uses them through runner

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


def child_main(zygote, req, fds):
    """Runs in the forked child. Never returns: the process is killed once
    its result is read, or ends in _exit when it could not write one."""
    code = 0
    ctx = enter.Context(zygote, req, fds)
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
    written = False
    try:
        write_result(out_fd, result, req)
        written = True
    except BaseException:  # noqa: BLE001
        code = 71
    try:
        os.close(out_fd)
    except OSError:
        pass
    if written and ctx.received:
        # The server kills this process through its pidfd once it has read
        # the result, reading its CPU and peak memory from the kernel while
        # it still runs, and answers without waiting for the teardown of its
        # memory (the slow part of exiting). A child that failed before its
        # request arrived exits instead: its channel closes and the server
        # hands the request to another.
        while True:
            time.sleep(3600)
    os._exit(code)


def write_result(out_fd, result, req):
    # Labels were checked; elsewhere (a traceback, a message) a lone
    # surrogate becomes "?" rather than an unreadable frame. Predictions
    # and scores come already encoded (`encode_labels`), spliced in front.
    labels = result.pop("_labels_json", None)
    data = json.dumps(result, allow_nan=False, ensure_ascii=False).encode("utf-8", "replace")
    if labels is not None:
        assert data.startswith(b'{"') and result, "a result with labels has a status"
        data = b'{"predictions":' + labels[0] + b',"scores":' + labels[1] + b"," + data[1:]
    view = memoryview(data)
    while view:
        n = os.write(out_fd, view)
        view = view[n:]


def map_rows(fd):
    """The rows' Arrow IPC stream, mapped read-only from the sealed memfd
    the server wrote: the same pages, no copy. Private, because kernels
    before 6.7 refuse any shared mapping of a write-sealed memfd. Python's
    mmap keeps a copy of the fd. Over the address-space limit the rows do
    not fit, which is memory_limit."""
    try:
        return mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    except OSError as e:
        if e.errno == errno.ENOMEM:
            raise MemoryError("the rows do not fit in the address space") from e
        raise
    finally:
        os.close(fd)


# Three rows of integers, floats and text (NULLs too) the server's encoder
# wrote, read by the harness at start-up: a spare child builds its first
# DataFrame from them.
WARM_ROWS = None


def warm_child():
    """Build one DataFrame from WARM_ROWS, inside the sandbox and before any
    request: the pages pandas and the rows reader write on first use
    (copy-on-write faults of the zygote's image) are this child's own before
    its request arrives. Only the common kinds: warming every kind cost the
    child more CPU than it saved its request (the zygote warmed them all
    once). Nothing here comes from a request, so nothing of one can leak
    into the next."""
    if WARM_ROWS is not None:
        to_dataframe(WARM_ROWS)


def run_child(ctx):
    timings = ctx.timings

    # Into the sandbox, step by step (enter.STEPS), then warm.
    t_enter = time.monotonic()
    enter.enter(ctx)
    warm_child()
    timings["enter_ms"] = (time.monotonic() - t_enter) * 1000.0

    # The request: its code and rows, the limits lowered to its own.
    source, rows_fd = enter.receive(ctx)
    ctx.received = True
    req = ctx.req
    t0 = time.monotonic()
    arrow = map_rows(rows_fd)
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
        encoded = encode_labels(labels, scores)
        result["_labels_json"] = encoded
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
        # As json.dumps({"p": labels, "s": scores}) counts it.
        size = len(encoded[0]) + len(encoded[1]) + 14
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


# Whether the environment has pyarrow (set by the zygote's warm-up); without
# it the rows are read by arrow_lite, the harness's own reader.
HAVE_PYARROW = True


def to_dataframe(arrow):
    import pandas as pd

    if not HAVE_PYARROW:
        df, metas = arrow_lite.to_dataframe(arrow)
        for i, meta in enumerate(metas):
            if meta.get("sluice:type") == "decimal":
                df.isetitem(i, _decimals(pd, df.iloc[:, i], df.index))
        return df
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
            df[field.name] = _decimals(pd, col.to_pylist(), df.index)
            continue
        if pa.types.is_boolean(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get, use_threads=False)
        elif pa.types.is_integer(field.type) and col.null_count > 0:
            df[field.name] = col.to_pandas(types_mapper=_nullable_int_mapper(pd, pa), use_threads=False)
    return df


def _decimals(pd, texts, index):
    """A decimal column, sent as text, as decimal.Decimal values (NULLs as
    None), whichever reader produced the text."""
    import decimal

    return pd.Series([None if pd.isna(v) else decimal.Decimal(v) for v in texts], dtype=object, index=index)


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


_COLUMNS = []  # the current request's column names, for error hints


def _clip(s, limit):
    if len(s) <= limit:
        return s
    return s[: limit - 40] + f" … [{len(s) - limit + 40} more characters]"
