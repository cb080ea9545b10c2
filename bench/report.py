"""The markdown report: the machine, the command, the targets, then every table."""

from __future__ import annotations

import datetime as dt
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from cells import Cell, Series, Spread, paired_differences, paired_ratios
from harness import MatrixResult
from importcost import ImportResult
from loopback import TOOL_STREAM_CHUNKS

RAW = "httpx"
# Typographic signs, spelled as escapes so the source stays plain ASCII where it matters.
TIMES, DASH = "\u00d7", "\u2013"
ORDER = ("httpx", "httpx-aiohttp", "turnout", "turnout-aiohttp", "turnout-fallback", "openai", "litellm")
LIBRARIES = (
    "turnout",
    "httpx",
    "httpcore",
    "httpx-sse",
    "h11",
    "anyio",
    "attrs",
    "cattrs",
    "pluggy",
    "openai",
    "pydantic",
    "litellm",
    "aiohttp",
    "httpx-aiohttp",
)


# -- the machine ---------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine(placement: str) -> dict[str, str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = load_average()
    versions = []
    for name in LIBRARIES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} logical ({usable} usable by this process)",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "OS": f"{platform.system()} {platform.release()}",
        "load average when the run started (1 / 5 / 15 min)": load,
        "CPU placement": placement,
        "libraries": ", ".join(versions),
    }


# -- formatting ----------------------------------------------------------------


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f}" if seconds >= 1e-4 else f"{seconds * 1e6:,.1f}"


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    if not values:
        return "—"
    s = Spread.of(list(values))
    return f"{fmt(s.median)} ({fmt(s.low)}{DASH}{fmt(s.high)})"


def times(x: float) -> str:
    return f"{x:.2f}{TIMES}"


def rate(x: float) -> str:
    return f"{x:,.0f}"


def ms(x: float) -> str:
    return f"{x * 1e3:,.1f}"


# -- targets -------------------------------------------------------------------


@dataclass
class Target:
    text: str
    measured: str
    passed: bool | None  # on the median; None: could not be measured
    # How many rounds, taken alone, would pass (None: not a per-round measure).
    rounds_passed: tuple[int, int] | None = None

    @property
    def verdict(self) -> str:
        word = {True: "pass", False: "**miss**", None: "n/a"}[self.passed]
        if self.rounds_passed is not None:
            passed, total = self.rounds_passed
            if 0 < passed < total:
                word += f" ({passed} of {total} rounds pass)"
        return word


def _series(result: MatrixResult, cell: Cell, name: str) -> Series | None:
    found = result.series.get((cell, name))
    return found if found is not None and found.samples else None


def _ratio_target(
    result: MatrixResult, cell: Cell, num: str, den: str, text: str, ok: Callable[[float], bool]
) -> Target:
    a, b = _series(result, cell, num), _series(result, cell, den)
    if a is None or b is None:
        return Target(text, "not measured", None)
    ratios = paired_ratios(a, b)
    median = statistics.median(ratios)
    rounds = (sum(1 for r in ratios if ok(r)), len(ratios))
    return Target(text, f"{spread(ratios, times)} ({cell.title})", ok(median), rounds)


def _fallback_target(result: MatrixResult, cell: Cell, text: str) -> Target:
    fb, one, raw = (_series(result, cell, n) for n in ("turnout-fallback", "turnout", RAW))
    if fb is None or one is None or raw is None:
        return Target(text, "not measured", None)
    extras = paired_differences(fb, one)
    extra, floor = statistics.median(extras), statistics.median(raw.cpu())
    measured = (
        f"the fallback adds {us(extra)} µs of CPU; one raw httpx request costs {us(floor)} µs "
        f"(= {extra / floor:.2f} raw requests; {cell.title})"
    )
    rounds = (sum(1 for e, r in zip(extras, raw.cpu(), strict=False) if e < r), len(extras))
    return Target(text, measured, extra < floor, rounds)


def targets(result: MatrixResult, imports: list[ImportResult]) -> list[Target]:
    plain_sync, plain_async = Cell(False, False, 1), Cell(False, True, 1)
    stream_sync, stream_async = Cell(True, False, 1), Cell(True, True, 1)
    found: list[Target] = []
    tools_sync, tools_async = Cell(True, False, 1, tools=True), Cell(True, True, 1, tools=True)
    plain = ((plain_sync, "sync"), (plain_async, "async"))
    # (cells, numerator, denominator, text, passes): each target's ratio, as data.
    ratios: list[tuple[Any, str, str, str, Callable[[float], bool]]] = [
        (
            plain,
            "turnout",
            RAW,
            f"turnout CPU per plain request ≤ 1.10 {TIMES} raw httpx",
            lambda r: r <= 1.10,
        ),
        (
            ((stream_sync, "sync"), (stream_async, "async")),
            "turnout",
            RAW,
            f"turnout CPU per streamed chunk ≤ 1.20 {TIMES} raw httpx + httpx-sse",
            lambda r: r <= 1.20,
        ),
        (
            ((tools_sync, "sync"), (tools_async, "async")),
            "turnout",
            RAW,
            f"turnout CPU per streamed tool-call chunk ≤ 1.10 {TIMES} raw httpx + httpx-sse",
            lambda r: r <= 1.10,
        ),
        (
            plain,
            "litellm",
            "turnout",
            f"≥ 5 {TIMES} less CPU per request than litellm.Router",
            lambda r: r >= 5.0,
        ),
        (
            plain,
            "openai",
            "turnout",
            f"≥ 2 {TIMES} less CPU per request than the openai SDK",
            lambda r: r >= 2.0,
        ),
    ]
    for cells, num, den, text, ok in ratios:
        for cell, how in cells:
            found.append(_ratio_target(result, cell, num, den, f"{text} ({how})", ok))
    found.append(_import_target(imports))
    for cell, how in ((plain_sync, "sync"), (plain_async, "async")):
        found.append(
            _fallback_target(
                result, cell, f"a fallback after a fast 503 costs less than one raw request ({how})"
            )
        )
    found.append(
        _ratio_target(
            result,
            Cell(False, True, 50),
            "turnout",
            RAW,
            f"AsyncRouter at concurrency 50: CPU per request ≤ 1.0 {TIMES} raw httpx.AsyncClient",
            lambda r: r <= 1.0,
        )
    )
    return found


def _import_target(imports: list[ImportResult]) -> Target:
    text = f"import turnout + plugin discovery ≤ 1.5 {TIMES} `import httpx` (CPU; wall shown too)"
    by = {r.label: r for r in imports}
    ours, httpx = by.get("import turnout + turnout.providers()"), by.get("import httpx")
    if ours is None or httpx is None or not ours.cpu or not httpx.cpu:
        return Target(text, "not measured", None)
    cpu_a, cpu_b = statistics.median(ours.cpu), statistics.median(httpx.cpu)
    wall_a, wall_b = statistics.median(ours.wall), statistics.median(httpx.wall)
    found = len(ours.found or [])
    measured = (
        f"CPU {ms(cpu_a)} ms vs {ms(cpu_b)} ms = {cpu_a / cpu_b:.2f}{TIMES}; "
        f"wall {ms(wall_a)} ms vs {ms(wall_b)} ms = {wall_a / wall_b:.2f}{TIMES} ({found} plugin(s) found)"
    )
    return Target(text, measured, cpu_a / cpu_b <= 1.5)


# -- observations --------------------------------------------------------------


def observations(result: MatrixResult) -> list[str]:
    """What the tables say beyond the targets, computed from this run's figures."""
    found: list[str] = []
    cells = list(dict.fromkeys(cell for cell, _ in result.series))
    for name in ORDER:
        closing: list[Cell] = []
        for cell in cells:
            entry = _series(result, cell, name)
            if entry is None:
                continue
            calls = statistics.median(float(s.calls) for s in entry.samples)
            if statistics.median(entry.connections()) >= 0.9 * calls:
                closing.append(cell)
        if closing:
            text = (
                f"**{result.labels.get(name, name)}** opened a new connection for (nearly) every call "
                f"in: {'; '.join(c.title for c in closing)}. Its connections do not go back to the pool, "
                "so every call pays a TCP set-up, which is in its CPU figures."
            )
            if all(c.stream for c in closing):
                text += (
                    " That is what happens when a client stops reading a stream at `[DONE]` and closes "
                    "the rest of the body unread, instead of reading it to its end."
                )
            found.append(text)
    for cell in cells:
        if not cell.asynchronous or cell.concurrency == 1 or cell.stream:
            continue
        raw, aio = _series(result, cell, RAW), _series(result, cell, "httpx-aiohttp")
        ours, ours_aio = _series(result, cell, "turnout"), _series(result, cell, "turnout-aiohttp")
        if raw is None or aio is None:
            continue
        raw_cpu, aio_cpu = statistics.median(raw.cpu()), statistics.median(aio.cpu())
        text = (
            f"At concurrency {cell.concurrency}, raw `httpx.AsyncClient` costs {us(raw_cpu)} µs of CPU "
            f"per request, the same client on httpx-aiohttp's transport {us(aio_cpu)} µs: most of the "
            "difference is httpcore's async connection pool, which on every request walks all its "
            "connections (and polls each idle one's socket)."
        )
        if ours is not None and ours_aio is not None:
            ours_cpu = statistics.median(ours.cpu())
            how = "inherits it" if ours_cpu > raw_cpu / 2 else "has a pool of its own"
            text += (
                f" `turnout.AsyncRouter` {how}: {us(ours_cpu)} µs by default, "
                f"{us(statistics.median(ours_aio.cpu()))} µs with "
                "`transport=httpx_aiohttp.AiohttpTransport()` (see Many concurrent calls below)."
            )
        found.append(text)
    return found


# -- tables --------------------------------------------------------------------


def _ordered(result: MatrixResult, cell: Cell) -> list[str]:
    """The contenders of a cell in the table's order, each baseline run (`NAME@base`) after NAME."""
    return [m for n in ORDER for m in (n, f"{n}@base") if (cell, m) in result.series]


def against_baseline(result: MatrixResult) -> list[str]:
    """Each turnout contender against its baseline run (`--baseline`), cell by cell: the
    per-round ratio of CPU per item (rounds interleaved), median and min to max."""
    lines = []
    cells = list(dict.fromkeys(cell for cell, _ in result.series))
    for cell in cells:
        for name in _ordered(result, cell):
            base = _series(result, cell, f"{name}@base")
            ours = _series(result, cell, name)
            if base is None or ours is None or not base.samples or not ours.samples:
                continue
            ratio = spread(paired_ratios(ours, base), times)
            lines.append(
                f"  {cell.key:<16} {name:<18} {spread(ours.cpu(), us):>18} µs vs baseline "
                f"{spread(base.cpu(), us):>18} µs: {ratio}"
            )
    return lines


def _cell_table(result: MatrixResult, cell: Cell, plan_calls: Callable[[Cell, str], int]) -> list[str]:
    names = _ordered(result, cell)
    raw = _series(result, cell, RAW)
    lines = [
        f"### {cell.title}",
        "",
        f"| contender | calls/round | CPU µs per {cell.unit} | {TIMES} raw httpx | calls/s "
        "| new connections/round | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        entry = result.series[(cell, name)]
        label = result.labels.get(name, name)
        if not entry.samples:
            reason = entry.skipped or result.skipped.get(name) or "not run"
            lines.append(f"| {label} | — | — | — | — | — | skipped: {reason} |")
            continue
        ratio = spread(paired_ratios(entry, raw), times) if raw is not None and name != RAW else "1"
        notes = "; ".join(entry.notes + ([f"stopped: {entry.skipped}"] if entry.skipped else []))
        lines.append(
            f"| {label} | {plan_calls(cell, name)} | {spread(entry.cpu(), us)} | {ratio} "
            f"| {spread(entry.rate(), rate)} | {statistics.median(entry.connections()):,.0f} | {notes} |"
        )
    aio, raw_aio = _series(result, cell, "turnout-aiohttp"), _series(result, cell, "httpx-aiohttp")
    if aio is not None and raw_aio is not None:
        same = spread(paired_ratios(aio, raw_aio), times)
        lines += [
            "",
            f"Same transport on both sides: turnout + aiohttp uses {same} the CPU of raw httpx + aiohttp.",
        ]
    return [*lines, ""]


def _import_table(imports: list[ImportResult]) -> list[str]:
    base = next((r for r in imports if r.label == "import httpx" and r.wall), None)
    lines = [
        f"| statement | wall ms | CPU ms | {TIMES} `import httpx` (wall) | peak RSS MiB | modules loaded |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in imports:
        if r.error is not None:
            lines.append(f"| `{r.label}` | — | — | — | — | failed: {r.error} |")
            continue
        ratio = times(statistics.median(r.wall) / statistics.median(base.wall)) if base else "—"
        lines.append(
            f"| `{r.label}` | {spread(r.wall, ms)} | {spread(r.cpu, ms)} | {ratio} "
            f"| {r.rss_mib:,.1f} | {r.modules} |"
        )
    found = next((r.found for r in imports if r.found is not None), None)
    if found is not None:
        lines += ["", f"`turnout.providers()` found {len(found)} provider(s): {', '.join(found) or 'none'}."]
    return [*lines, ""]


def _normalization_table(norm: dict[str, Any]) -> list[str]:
    if "error" in norm:
        return [f"Not measured: {norm['error']}", ""]
    lines = [
        "| provider | distribution | error body | status → kind | retry_after | normalizations/s | µs each |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in norm["results"]:
        rates = row["rates"]
        lines.append(
            f"| {row['provider']} | {row['distribution'] or '—'} | {row['source']} "
            f"| {row['status']} → {row['kind']} | {row['retry_after']} | {spread(rates, rate)} "
            f"| {1e6 / row['rate']:.1f} |"
        )
    return [*lines, ""]


# -- the document --------------------------------------------------------------


METHOD = f"""\
How it is measured:

- **Upstream**: `bench/loopback.py`, a minimal OpenAI-compatible HTTP/1.1 server on a raw
  `asyncio.Protocol`, in its own process on 127.0.0.1 (its CPU is not counted). Plain calls get a
  348-byte completion; streamed calls get 10 `chat.completion.chunk` events then `data: [DONE]`,
  written at once (so the stream figures are the libraries' own cost per chunk, not socket
  wake-ups); `/fail/...` answers 503 at once. A stream asked with `tools` gets two parallel
  tool calls as OpenAI streams them: each call's id and name in its first chunk, then its
  arguments 4 characters per chunk, then the finish chunk ({TOOL_STREAM_CHUNKS} chunks).
- **Contenders** (`bench/contenders.py`) each run in their **own worker process**
  (`bench/worker.py`) that imports only their library, so one library's imports, garbage and
  background threads never weigh on another's figures. All send the same request, read the answer's
  text, and are checked for the right answer before and after the rounds.
  - *httpx (raw)*: `Client.post(...).json()`; streams with `httpx_sse.connect_sse` and one
    `json.loads` per event, read to the end of the body (not left at `[DONE]`), so the connection
    goes back to the pool — the floor. Same connection pool size as turnout's routers.
  - *turnout*: `turnout.Router` / `AsyncRouter` with one deployment of a bench-local
    `OpenAICompatible` provider, registered in a private `turnout.Plugins(entry_points=False)`.
    It parses answers and events with orjson, a dependency of turnout on CPython (`turnout._json`:
    the stdlib parses whatever orjson declines and any answer with a 19-digit number, so a chunk
    and an answer are what `json.loads` would make); raw httpx parses with `json.loads`, as
    httpx-sse's users do. What orjson is worth per chunk: `python bench/inprocess.py --mode
    tools --stdlib-json` against the same without the flag.
  - *Tool-call streams*: raw httpx reads each event's `delta.tool_calls` and assembles the calls by
    hand (by index: id, name, argument pieces joined); turnout iterates the stream to its end and
    reads `stream.response.tool_calls`. Both hand back every call assembled, checked.
  - *turnout, 503 → fallback*: two deployments, the first answering 503 (its
    `retry_policy=RetryPolicy(max_retries=0)`), so every call makes two requests. The breaker and
    the retry budget are configured never to set the failing deployment aside: this measures the
    fallback itself, not the (free) skip that the default breaker soon makes.
  - *openai SDK*: `openai.OpenAI` / `AsyncOpenAI`, `max_retries=0`.
  - *litellm.Router*: two `openai/...` deployments in one model group, `num_retries=0`,
    `LITELLM_LOCAL_MODEL_COST_MAP=True` (no network). Its calls cost about ten times the others', so it runs a
    quarter of the calls per round (the same relative precision).
  - *+ aiohttp*: the same with `httpx_aiohttp.AiohttpTransport()` as the `httpx.AsyncClient`
    transport (`AsyncRouter(..., transport=...)` for turnout).
- **CPU per request** is the worker's `time.process_time()` delta (every thread of the process)
  over a round, divided by its calls (or by its chunks, 10 per stream). It includes the bench's loop,
  the same for every contender. **calls/s** is calls over the round's wall time. **New
  connections/round** is what the upstream accepted during the round: 0 means every call reused a
  pooled connection; one per call means the client closed each connection (and paid a TCP set-up).
- **Rounds are interleaved**: each round runs every cell, and in each cell every contender in
  turn, in up to three slices (A B C A B C ...), the order rotating from round to round. Before
  its slices, a contender makes as many untimed calls as the concurrency, so that pooled
  connections which expired in between are open again. Each cell has its own client (router) in
  the worker, so no cell pays for another's connections. Tables show the median over rounds and
  (min to max). Ratios are the median of per-round ratios (round *i* of one contender ran next to
  round *i* of the other), with their min and max.
- Concurrency 50: async calls go through `asyncio.gather` with an `asyncio.Semaphore(50)`; sync
  calls through a pool of 50 threads, each making its share of the calls (the CPU then includes
  the threads' contention for the GIL).
- **Import cost**: each statement in a fresh interpreter, timed inside it (interpreter start-up
  excluded), after one unmeasured warm-up run; peak RSS is `ru_maxrss` of that child.
- **Normalization**: `turnout.normalize_error(provider, status=, headers=, body=)` in a loop, per
  CPU second, on the 429-with-Retry-After body each provider's own emulator renders.
- Where a contender's time goes: `python bench/profile_turnout.py [--async] [--stream]
  [--contender NAME] [--pyinstrument]` profiles one cell against the same upstream.
"""


def render(
    *,
    command: str,
    settings: dict[str, Any],
    host: dict[str, str],
    result: MatrixResult | None,
    imports: list[ImportResult],
    normalization: dict[str, Any],
    plan_calls: Callable[[Cell, str], int],
    duration: float,
    started: dt.datetime,
    quick: bool,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run.py: do not edit by hand, run it again. -->",
        "",
        "turnout against raw httpx (the floor) and its peers, in one run, against the same loopback "
        "upstream. Regenerate with `python bench/run.py` (or `nox -s bench`); `--quick` for a "
        "smoke run, `--help` for the options.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick smoke run**: few rounds and calls; the figures are indicative only. "
            "Run `python bench/run.py` without `--quick` for the real ones.",
            "",
        ]
    lines += ["## Machine and run", "", "| | |", "|---|---|"]
    for key, value in host.items():
        lines.append(f"| {key} | {value} |")
    settings_text = ", ".join(f"{k} {v}" for k, v in settings.items())
    lines += [
        f"| command | `{command}` |",
        f"| settings | {settings_text} |",
        f"| started | {started:%Y-%m-%d %H:%M} UTC, took {duration:.0f} s |",
    ]
    if result is not None:
        requests = {k: v for k, v in result.upstream.get("requests", {}).items() if k != "/stats"}
        paths = ", ".join(f"`{k}` {v:,}" for k, v in sorted(requests.items()))
        lines.append(
            f"| upstream served | {sum(requests.values()):,} requests ({paths}) "
            f"on {result.upstream.get('connections', 0):,} connections |"
        )
    lines.append(f"| load average when the run ended | {load_average()} |")
    lines.append("")
    if result is not None:
        lines += ["## Targets", "", f"| target | measured: median (min{DASH}max) | result |", "|---|---|---|"]
        for target in targets(result, imports):
            lines.append(f"| {target.text} | {target.measured} | {target.verdict} |")
        lines += [""]
    if result is not None:
        notes = observations(result)
        if notes:
            lines += ["## Observations", "", *[f"- {note}" for note in notes], ""]
    lines += [METHOD, ""]
    if result is not None:
        lines += ["## Requests", ""]
        cells = list(dict.fromkeys(cell for cell, _ in result.series))
        for cell in cells:
            lines += _cell_table(result, cell, plan_calls)
    lines += ["## Import cost", "", *_import_table(imports)]
    lines += ["## Error normalization", "", *_normalization_table(normalization)]
    return "\n".join(lines).rstrip() + "\n"
