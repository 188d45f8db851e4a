"""Shared helpers for the benchmark scripts: timing, a markdown table, saving results.

    seconds = timeit(fn, repeat=5, warmup=1)            # median wall time of fn()
    medians = timeit({"ours": fa, "torch": fb}, rounds=5)  # a dict: medians, round-robin
    table = Table(["n", "ours ms", "torch ms", "ratio"])
    table.add(1024, 1.2, 3.4, 2.8)                      # or table.add([1024, 1.2, 3.4, 2.8])
    table.print()                                       # a markdown table (also str(table))
    save_results("bench_softmax", rows, fig)            # results/bench_softmax.{json,png}

Ratios are only meaningful between numbers measured in the same run on the same
machine; given several candidates, ``timeit`` interleaves them (a, b, a, b, ...) so a
burst of load from elsewhere hits them all alike. Every JSON file records the machine
(cores, load average, library versions) next to the rows, since a shared machine can
be busy.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import pstats
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from minitransformer.autograd.function import Function

RESULTS_DIR = Path(__file__).resolve().parent / "results"

__all__ = [
    "op_times",
    "RESULTS_DIR",
    "timeit",
    "timeit_many",
    "timeit_stats",
    "Table",
    "machine_info",
    "save_results",
]


def timeit(
    fn: Callable[[], Any] | Mapping[str, Callable[[], Any]],
    repeat: int = 5,
    warmup: int = 1,
    *,
    rounds: int | None = None,
) -> Any:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` calls, after ``warmup`` calls.

    ``fn`` may also be a dict name -> function: then the functions are called
    round-robin and a dict name -> median seconds comes back. ``rounds`` is another
    name for ``repeat``.
    """
    if rounds is not None:
        repeat = rounds
    if callable(fn):
        return timeit_many({"fn": fn}, repeat, warmup)["fn"]
    return timeit_many(fn, repeat, warmup)


def timeit_many(
    fns: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Median seconds of each function, called round-robin: a, b, c, a, b, c, ..."""
    return {name: stats["median"] for name, stats in timeit_stats(fns, repeat, warmup).items()}


SETTLE_SECONDS = 0.03  # idle time before each timed call (see timeit_stats)


def timeit_stats(
    fns: Mapping[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1
) -> dict[str, dict[str, float]]:
    """Median and minimum wall seconds, and median CPU seconds, of each function.

    The functions are called round-robin. On a busy machine the median is what a user
    sees, the minimum what the code does when it gets the cores, and the CPU time
    (``time.process_time``: all threads of this process) the work it did whoever else
    was running; wall and CPU far apart say the machine was shared (or threads waited).

    Before each timed call the cores are left idle for ``SETTLE_SECONDS``: PyTorch's
    OpenMP threads keep spinning for some milliseconds after each of its parallel ops
    (and OpenBLAS's after each call), and without the pause they would run on into the
    next candidate's time, stealing its cores and adding to its CPU seconds.
    """
    if repeat < 1 or warmup < 0:
        raise ValueError(f"need repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    for _ in range(warmup):
        for f in fns.values():
            f()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, f in fns.items():
            time.sleep(SETTLE_SECONDS)
            start, start_cpu = time.perf_counter(), time.process_time()
            f()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {
        name: {
            "median": statistics.median(wall[name]),
            "min": min(wall[name]),
            "cpu_median": statistics.median(cpu[name]),
        }
        for name in fns
    }


class Table:
    """Rows of values printed as a markdown table; floats get 3 significant digits."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.rows: list[list[Any]] = []

    def add(self, *values: Any) -> None:
        """Append a row: ``add(a, b, c)`` or ``add([a, b, c])``."""
        if len(values) == 1 and isinstance(values[0], (list, tuple)):
            values = tuple(values[0])
        if len(values) != len(self.columns):
            raise ValueError(f"a row needs {len(self.columns)} values, got {len(values)}")
        self.rows.append(list(values))

    @staticmethod
    def _cell(value: Any) -> str:
        if value is None:  # not measured
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
        return str(value)

    def markdown(self) -> str:
        cells = [self.columns] + [[self._cell(v) for v in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(lines)

    def print(self) -> None:
        print(self.markdown())

    def __str__(self) -> str:
        return self.markdown()


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, cores, load, library versions, time."""
    info: dict[str, Any] = {
        "time": _dt.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }
    for module in ("numpy", "numba", "torch"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def save_results(
    name: str, rows: Sequence[Mapping[str, Any]], fig: Any = None, **extra: Any
) -> tuple[Path, Path | None]:
    """Write ``results/<name>.json`` (rows, machine info, extra fields) and ``<name>.png``.

    ``fig`` is a matplotlib Figure (or None for no plot). Returns the two paths.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine_info(), **extra, "rows": list(rows)}
    json_path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    png_path = None
    if fig is not None:
        png_path = RESULTS_DIR / f"{name}.png"
        fig.savefig(png_path, dpi=120, bbox_inches="tight")
    return json_path, png_path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def op_times(stats: pstats.Stats) -> list[tuple[str, float, float, int]]:
    """(op, forward s, backward s, calls) for every Function subclass that ran, by total.

    From a cProfile run of our code: each op's forward and backward are found by the file
    and line where they are defined; the seconds are cumulative (with what they call).
    """

    # pstats keys are (file, first line, name); values (prim. calls, calls, own s, total s, callers)
    by_code = {key[:2]: value for key, value in stats.stats.items()}
    rows = []
    todo, seen = list(Function.__subclasses__()), set()
    while todo:
        op = todo.pop()
        if op in seen:
            continue
        seen.add(op)
        todo.extend(op.__subclasses__())
        entries = []
        for name in ("forward", "backward"):
            code = getattr(op, name).__code__
            entries.append(by_code.get((code.co_filename, code.co_firstlineno), (0, 0, 0.0, 0.0)))
        forward, backward = entries
        if forward[1] or backward[1]:
            rows.append((op.__name__, forward[3], backward[3], forward[1]))
    return sorted(rows, key=lambda r: -(r[1] + r[2]))
