"""The server cell: `turnout serve` and the LiteLLM proxy in front of the same loopback
upstream, one client driving both. `python bench/serve_bench.py [--quick]`.

Three targets, each started the same way (its own process, one worker, on
127.0.0.1, API keys required), in rounds, the order rotating each round:

- **direct**: the loopback upstream itself (bench/loopback.py), the floor;
- **turnout serve**: `python -m turnout serve -c turnout.toml --port P`;
- **LiteLLM proxy**: `litellm --config proxy.yaml --port P` (`litellm[proxy]` from PyPI,
  in the interpreter `--litellm` names; skipped, with the reason, when it cannot start).

The client is one process (this one) speaking HTTP/1.1 over raw asyncio streams
with keep-alive connections, so its own cost is small and the same for all.
Measured per target and round: the p50 latency of sequential calls (what the
proxy adds over a direct call), and at concurrency 50 the calls per second and
the proxy's CPU per request (user + system time of its whole process tree, from
psutil, over the calls). `--pin` puts the proxy on one CPU and the upstream and
the client on the others (off by default: on a machine shared with other work a
pinned proxy waits for its CPU, which its latency then shows).

The report replaces the section between the `serve-bench` markers in
docs/benchmarks.md (bench/run.py keeps that section when it rewrites the page).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from harness import LITELLM_ENV, Placement, Upstream, log
from loopback import CONTENT, STREAM_CHUNKS
from merge import SERVER_END, SERVER_START, splice
from report import machine

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
KEY = "sk-bench-server-key"
UPSTREAM_KEY = "sk-bench-upstream-key"
DIRECT, TURNOUT, LITELLM = "direct", "turnout serve", "LiteLLM proxy"
MODES = ("plain", "stream")
DASH, TIMES, LE, MU = "\u2013", "\u00d7", "\u2264", "\u00b5"


# -- the client ------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; `call` sends a prepared request and reads the
    whole response (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
        if b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def prepare(port: int, model: str, key: str | None, stream: bool) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
    if stream:
        body["stream"] = True
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
    )
    if key is not None:
        head += f"authorization: Bearer {key}\r\n"
    return (head + "\r\n").encode() + data


def answered(status: int, body: bytes, stream: bool) -> bool:
    if status != 200:
        return False
    if stream:
        return b"data: [DONE]" in body and f"tok{STREAM_CHUNKS - 1}".encode() in body
    return CONTENT.encode() in body


@dataclass
class Load:
    """What one run of calls measured."""

    latencies: list[float]
    wall: float
    cpu: float | None
    failures: int
    example: bytes = b""


async def drive(
    port: int, request: bytes, stream: bool, calls: int, concurrency: int
) -> tuple[list[float], int, bytes]:
    connections = [Connection("127.0.0.1", port) for _ in range(concurrency)]
    await asyncio.gather(*(c.open() for c in connections))
    latencies: list[float] = []
    failures = [0]
    example = [b""]
    left = [calls]

    async def worker(connection: Connection) -> None:
        while left[0] > 0:
            left[0] -= 1
            began = time.perf_counter()
            try:
                status, body = await connection.call(request)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                failures[0] += 1
                example[0] = repr(exc).encode()
                await connection.close()
                continue
            latencies.append(time.perf_counter() - began)
            if not answered(status, body, stream):
                failures[0] += 1
                example[0] = body[:300]

    try:
        await asyncio.gather(*(worker(c) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return latencies, failures[0], example[0]


# -- the servers ---------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A proxy in its own process tree, pinned, with its CPU time readable."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, workdir: Path) -> None:
        self.name, self.port = name, port
        self.log_path = workdir / f"{name.split()[0].lower()}.log"
        with self.log_path.open("w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{self.port}{path}", headers={"authorization": f"Bearer {KEY}"}
                )
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not get ready in {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def pin(self, cpus: Sequence[int] | None) -> None:
        if cpus is None:
            return
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                process.cpu_affinity(list(cpus))

    def cpu(self) -> float:
        total = 0.0
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def turnout_config(upstream: str) -> str:
    return (
        "deadline = 30.0\n[[deployments]]\n"
        f'name = "bench"\nprovider = "meshapi"\nmodel = "{MODEL}"\n'
        f'api_key = "{UPSTREAM_KEY}"\nbase_url = "{upstream}"\n'
        '[routes]\nchat = ["bench"]\n'
        f'[server]\napi_keys = ["{KEY}"]\n'
    )


def litellm_config(upstream: str) -> str:
    return (
        "model_list:\n  - model_name: chat\n    litellm_params:\n"
        f"      model: openai/{MODEL}\n      api_base: {upstream}/v1\n      api_key: {UPSTREAM_KEY}\n"
        f"general_settings:\n  master_key: {KEY}\n"
        "litellm_settings:\n  num_retries: 0\n  telemetry: false\n"
    )


def start_turnout(upstream: str, workdir: Path, extra: Sequence[str]) -> Server:
    (workdir / "turnout.toml").write_text(turnout_config(upstream))
    port = free_port()
    argv = [sys.executable, "-m", "turnout", "serve", "-c", "turnout.toml", "--port", str(port)]
    argv += ["--log-level", "warning", *extra]
    server = Server(TURNOUT, argv, dict(os.environ), port, workdir)
    server.wait_ready("/readyz", 60)
    return server


def start_litellm(upstream: str, workdir: Path, executable: str) -> Server:
    (workdir / "proxy.yaml").write_text(litellm_config(upstream))
    port = free_port()
    argv = [executable, "--config", "proxy.yaml", "--host", "127.0.0.1", "--port", str(port)]
    server = Server(LITELLM, argv, {**os.environ, **LITELLM_ENV}, port, workdir)
    server.wait_ready("/health/liveliness", 180)
    return server


def find_litellm(given: str | None) -> str | None:
    if given:
        return given
    local = ROOT / ".venv" / "litellm-proxy" / "bin" / "litellm"
    return str(local) if local.exists() else shutil.which("litellm")


# One target: its server (None: the upstream itself), port, model and key.
Target = tuple["Server | None", int, str, "str | None"]


# -- the rounds -------------------------------------------------------------------------------


@dataclass
class Cell:
    """Every round's figures of one target in one mode."""

    p50: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    cpu_c1: list[float] = field(default_factory=list)
    failures: int = 0


def measure(
    server: Server | None, port: int, model: str, key: str | None, stream: bool, args: argparse.Namespace
) -> tuple[Load, Load]:
    request = prepare(port, model, key, stream)
    loads = []
    for calls, concurrency in ((args.sequential, 1), (args.calls, args.concurrency)):
        cpu_before = server.cpu() if server is not None else None
        began = time.perf_counter()
        latencies, failures, example = asyncio.run(drive(port, request, stream, calls, concurrency))
        wall = time.perf_counter() - began
        cpu = server.cpu() - cpu_before if server is not None and cpu_before is not None else None
        loads.append(Load(latencies, wall, cpu, failures, example))
    return loads[0], loads[1]


def run_rounds(targets: dict[str, Target], args: argparse.Namespace) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {(name, mode): Cell() for name in targets for mode in MODES}
    names = list(targets)
    log("warm-up")
    for _, port, model, key in targets.values():
        for stream in (False, True):
            asyncio.run(drive(port, prepare(port, model, key, stream), stream, args.warmup, 10))
    for index in range(args.rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for mode in MODES:
            for name in order:
                server, port, model, key = targets[name]
                c1, c50 = measure(server, port, model, key, mode == "stream", args)
                cell = cells[(name, mode)]
                cell.p50.append(statistics.median(c1.latencies))
                cell.rate.append(len(c50.latencies) / c50.wall)
                if c50.cpu is not None and c1.cpu is not None:
                    cell.cpu.append(c50.cpu / args.calls)
                    cell.cpu_c1.append(c1.cpu / args.sequential)
                cell.failures += c1.failures + c50.failures
                if c1.failures or c50.failures:
                    log(f"  {name} {mode}: failures, e.g. {(c1.example or c50.example)[:200]!r}")
        log(f"round {index + 1}/{args.rounds} done")
    return cells


# -- the report ----------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], scale: float, digits: int = 0) -> str:
    if not values:
        return "n/a"
    fmt = f"{{:,.{digits}f}}"
    low, mid, high = (fmt.format(v * scale) for v in (min(values), med(values), max(values)))
    return f"{mid} ({low}{DASH}{high})"


def paired(a: Sequence[float], b: Sequence[float], op: Any) -> list[float]:
    return [op(x, y) for x, y in zip(a, b, strict=False)]


def report(
    cells: dict[tuple[str, str], Cell], args: argparse.Namespace, host: dict[str, str], notes: list[str]
) -> str:
    names = sorted({name for name, _ in cells}, key=[DIRECT, TURNOUT, LITELLM].index)
    lines = [
        SERVER_START,
        "## The server cell: `turnout serve` and the LiteLLM proxy",
        "",
        "<!-- Generated by bench/serve_bench.py: do not edit by hand, run it again. -->",
        "",
        f"The same loopback upstream behind `turnout serve` and behind the LiteLLM proxy, one client driving "
        f"both; `{args.command}`. Each proxy runs one worker in its own process, API keys required; "
        f"{host['CPU placement']}. {args.rounds} rounds, the order rotating; per round and target "
        f"{args.sequential} sequential calls, then {args.calls} calls at concurrency {args.concurrency}.",
        "",
        f"Machine: {host['CPU']}, {host['cores']}, {host['Python']}; load average at the start "
        f"{host['load average when the run started (1 / 5 / 15 min)']}. Started {args.started}, took "
        f"{args.took:.0f} s; load average at the end {args.load_after}. Versions: {args.versions}.",
        "",
    ]
    lines += [*[f"- {note}" for note in notes], ""] if notes else []
    lines += ["### Targets", "", "| target | measured: median (min\u2013max) | result |", "|---|---|---|"]
    for mode in MODES:
        t, lite, direct = cells.get((TURNOUT, mode)), cells.get((LITELLM, mode)), cells.get((DIRECT, mode))
        if t is not None and lite is not None and lite.cpu:
            ratios = paired(t.cpu, lite.cpu, lambda x, y: x / y)
            ok = med(ratios) <= 0.25
            lines.append(
                f"| {mode}: server CPU per request at concurrency {args.concurrency} {LE} 0.25 {TIMES} "
                f"the LiteLLM proxy's | {spread(ratios, 1, 3)} {TIMES} | {'pass' if ok else '**miss**'} |"
            )
        if t is not None and direct is not None:
            added = paired(t.p50, direct.p50, lambda x, y: x - y)
            ok = med(added) <= 0.001
            lines.append(
                f"| {mode}: p50 latency added over a direct call, sequential \u2264 1 ms | "
                f"{spread(added, 1000, 3)} ms | {'pass' if ok else '**miss**'} |"
            )
    lines += ["", "### Figures", ""]
    lines += [
        "| mode | target | p50 latency, sequential (ms) | added over direct (ms) | calls/s at concurrency "
        f"{args.concurrency} | server CPU per request, concurrency {args.concurrency} (\u00b5s) | "
        "server CPU per request, sequential (\u00b5s) | failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        direct = cells.get((DIRECT, mode))
        for name in names:
            cell = cells[(name, mode)]
            added = (
                spread(paired(cell.p50, direct.p50, lambda x, y: x - y), 1000, 3)
                if direct is not None and name != DIRECT
                else "\u2013"
            )
            lines.append(
                f"| {mode} | {name} | {spread(cell.p50, 1000, 3)} | {added} | {spread(cell.rate, 1)} | "
                f"{spread(cell.cpu, 1e6) if cell.cpu else DASH} | "
                f"{spread(cell.cpu_c1, 1e6) if cell.cpu_c1 else DASH} | {cell.failures} |"
            )
    lines += [
        "",
        "A plain call is one 348-byte completion; a stream is 10 `chat.completion.chunk` events and "
        "`[DONE]`, which each proxy parses and writes again. Server CPU is user + system time of the "
        "proxy's whole process tree over the calls, divided by the calls; the upstream's and the "
        "client's are not counted.",
        SERVER_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    path.write_text(splice(text, section), encoding="utf-8")


# -- main ------------------------------------------------------------------------------------------


def versions(litellm: str | None) -> str:
    from importlib.metadata import version

    found = []
    for name in ("turnout", "uvicorn", "starlette", "httpx-aiohttp", "httptools", "uvloop"):
        with contextlib.suppress(Exception):
            found.append(f"{name} {version(name)}")
    if litellm:
        python = Path(litellm).parent / "python"
        with contextlib.suppress(Exception):
            out = subprocess.run(
                [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True,
                text=True,
                check=True,
            )
            found.append(f"litellm {out.stdout.strip()}")
    return ", ".join(found)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick 1)")
    parser.add_argument("--sequential", type=int, help="sequential calls per round (default 300; quick 50)")
    parser.add_argument("--calls", type=int, help="calls at concurrency per round (default 1000; quick 200)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=300, help="calls per target and mode before the rounds")
    parser.add_argument("--litellm", help="the `litellm` executable of an install with litellm[proxy]")
    parser.add_argument("--skip-litellm", action="store_true", help="measure turnout serve alone")
    parser.add_argument(
        "--turnout-arg", action="append", default=[], help="an argument added to `turnout serve` (repeatable)"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin the proxy to one CPU, the upstream and the client to the others (on a machine "
        "shared with other work, a pinned proxy waits for its CPU: off by default)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.sequential = args.sequential or (50 if args.quick else 300)
    args.calls = args.calls or (200 if args.quick else 1000)
    if args.quick:
        args.warmup = min(args.warmup, 50)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.command = "python bench/serve_bench.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    began = time.perf_counter()
    args.started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = args.pin and len(cpus) >= 2
    proxy_cpus, rest = (cpus[:1], cpus[1:]) if pinned else (None, None)
    placement = (
        f"the proxy measured pinned to CPU {proxy_cpus[0]}, the upstream and the client to CPU "
        f"{','.join(map(str, rest))}"
        if pinned and proxy_cpus and rest
        else "not pinned"
    )
    host = machine(placement)
    notes: list[str] = []
    litellm = None if args.skip_litellm else find_litellm(args.litellm)
    if not args.skip_litellm and litellm is None:
        notes.append("The LiteLLM proxy was not measured: no `litellm` executable found (`--litellm PATH`).")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        workdir = Path(tmp)
        if rest is not None:
            os.sched_setaffinity(0, rest)  # this client, and the upstream it starts
        upstream = Upstream(Placement(None, None), max_seconds=3600)
        servers: list[Server] = []
        try:
            targets: dict[str, tuple[Server | None, int, str, str | None]] = {
                DIRECT: (None, upstream.port, MODEL, None)
            }
            log("starting turnout serve")
            turnout = start_turnout(upstream.base_url, workdir, args.turnout_arg)
            servers.append(turnout)
            turnout.pin(proxy_cpus)
            targets[TURNOUT] = (turnout, turnout.port, "chat", KEY)
            if litellm is not None:
                log("starting the LiteLLM proxy")
                try:
                    proxy = start_litellm(upstream.base_url, workdir, litellm)
                except RuntimeError as exc:
                    notes.append(f"The LiteLLM proxy was not measured: it did not start ({exc}).")
                    log(str(exc))
                else:
                    servers.append(proxy)
                    proxy.pin(proxy_cpus)
                    targets[LITELLM] = (proxy, proxy.port, "chat", KEY)
            cells = run_rounds(targets, args)
        finally:
            for server in servers:
                server.stop()
            upstream.stop()
    args.took = time.perf_counter() - began
    args.load_after = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    args.versions = versions(litellm)
    section = report(cells, args, host, notes)
    if args.no_write:
        print(section)
    else:
        write_section(args.output, section)
        log(f"wrote the server cell into {args.output}")
    for line in section.splitlines():
        if line.startswith(("| plain:", "| stream:")):
            log("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
