"""Drive each hostile row in a process of its own, and measure it.

    python -m tests.hostile.probe                 # every row, sync and async: the table
    python -m tests.hostile.probe head-drip-chat  # some rows
    python -m tests.hostile.probe --json          # the outcomes as JSON

A row runs in a fresh child process (`child`), so its peak memory is its own:
the child resets its peak RSS (`VmHWM`) just before the call, reads it after,
and reports the growth with the time the call took, the error it ended with,
and every place the key was found (the error's str, repr, pickle, traceback,
attempts, exception chain and any request on it, log records at DEBUG of
every logger, httpcore's included). The parent serves the hostile upstream
(`tests.hostile.upstream`) and runs a few children at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import pickle
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .rows import CONFIG_CASES, ROWS, ROWS_LIST, ConfigCase, Row, base_config, with_value

__all__ = ["MODES", "leaks", "run_rows", "table", "upstreams"]

ROOT = Path(__file__).resolve().parents[2]
MODES = ("sync", "async")
HI = [{"role": "user", "content": "hello"}]
# Children running at once: most of a row is waiting on the upstream; of them at most
# HEAVY_WORKERS busy ones (hundreds of MB, or the CPU as fast as loopback goes).
WORKERS = 6
HEAVY_WORKERS = 2
# The Redis URL children use for rows whose state is on Redis (no Redis: those rows skip).
REDIS_ENV = "TURNOUT_HOSTILE_REDIS"


# -- where a key may hide --------------------------------------------------------------


def _found(key: str, where: str, text: str, out: list[str]) -> None:
    if key in text:
        out.append(where)


def leaks(thing: Any, key: str, where: str = "error") -> list[str]:
    """Every place `key` is reachable from an error (or a response): its str, repr,
    pickle and traceback, its attempts, its attributes, its `__context__` and
    `__cause__` chain, and the headers and URL of any request on them."""
    import httpx

    out: list[str] = []
    stack: list[tuple[str, Any]] = [(where, thing)]
    seen: set[int] = set()
    while stack:
        name, item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        _found(key, f"str({name})", str(item), out)
        _found(key, f"repr({name})", repr(item), out)
        try:
            blob = pickle.dumps(item)
        except Exception as exc:  # an error that cannot cross a process pool is a bug too
            out.append(f"pickle({name}) failed: {type(exc).__name__}")
        else:
            if key.encode() in blob:
                out.append(f"pickle({name})")
        if isinstance(item, httpx.Request):
            _found(key, f"{name}.headers", repr(item.headers.raw), out)
            _found(key, f"{name}.url", str(item.url), out)
            continue
        if isinstance(item, BaseException):
            text = "".join(traceback.format_exception(item))
            _found(key, f"traceback({name})", text, out)
            stack.append((f"{name}.__context__", item.__context__))
            stack.append((f"{name}.__cause__", item.__cause__))
            try:
                request = getattr(item, "request", None)
            except RuntimeError:  # httpx: an exception raised without a request
                request = None
            stack.append((f"{name}.request", request))
        for attr, value in getattr(item, "__dict__", {}).items():
            if attr == "attempts":
                for i, attempt in enumerate(value):
                    stack.append((f"{name}.attempts[{i}]", attempt))
                    stack.append((f"{name}.attempts[{i}].error", attempt.error))
            elif isinstance(value, BaseException | httpx.Request):
                stack.append((f"{name}.{attr}", value))
            else:
                _found(key, f"{name}.{attr}", repr(value), out)
    return sorted(set(out))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def log_leaks(records: Iterable[logging.LogRecord], key: str) -> list[str]:
    out: list[str] = []
    for record in records:
        where = f"log {record.name}"
        _found(key, where, record.getMessage(), out)
        _found(key, where + " (attributes)", repr(vars(record)), out)
        if record.exc_info and record.exc_info[1] is not None:
            out.extend(leaks(record.exc_info[1], key, where + " exc_info"))
    return sorted(set(out))


# -- the routers a child builds ------------------------------------------------------


def _plugins(provider: str) -> Any:
    import turnout
    from tests.core.acme import Acme

    found = turnout.Plugins(entry_points=False)
    found.add_provider(Acme())
    if provider == "modelroute":
        from turnout_modelroute.provider import ModelRoute

        found.add_provider(ModelRoute())
    return found


def _key(provider: str) -> str:
    if provider == "modelroute":
        from turnout_modelroute.provider import fake_key

        return fake_key(secrets.token_hex(8))
    return f"sk-hostile-{secrets.token_hex(16)}"


def _deployment(name: str, row: Row, key: str, url: str) -> Any:
    import turnout

    options = {"poll_interval": 0.2} if row.provider == "modelroute" else {}
    return turnout.Deployment(name, row.provider, "m", api_key=key, base_url=url, options=options)


def _router(mode: str, row: Row, deployments: list[Any], **kw: Any) -> Any:
    import httpx

    import turnout

    cls = turnout.Router if mode == "sync" else turnout.AsyncRouter
    if row.options.get("client"):
        kw["http_client"] = httpx.Client(trust_env=False) if mode == "sync" else httpx.AsyncClient()
    if row.options.get("store") == "redis":
        from turnout.state import RedisStore

        kw["store"] = RedisStore(os.environ[REDIS_ENV], prefix=f"hostile:{secrets.token_hex(6)}:")
    return cls(deployments, plugins=_plugins(row.provider), deadline=row.deadline, **kw)


async def _call_async(router: Any, op: str, **kw: Any) -> Any:
    if op == "chat":
        return await router.chat(HI, **kw)
    async with router.stream(HI, **kw) as stream:
        async for _ in stream:
            pass
    return stream.response


def _call_sync(router: Any, op: str, **kw: Any) -> Any:
    if op == "chat":
        return router.chat(HI, **kw)
    with router.stream(HI, **kw) as stream:
        for _ in stream:
            pass
    return stream.response


_LOOP: asyncio.AbstractEventLoop | None = None


def _await(coro: Any) -> Any:
    """Run `coro` on the child's one event loop (a thread of its own), so an
    AsyncRouter's connections live and die on the loop that opened them."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _LOOP).result()


def _timed(mode: str, call: Callable[[], Any]) -> tuple[float, Any, BaseException | None]:
    """(seconds, the result, the TurnoutError it raised) of one call, sync or async."""
    import turnout

    started = time.monotonic()
    try:
        result = call() if mode == "sync" else _await(call())
    except turnout.TurnoutError as exc:
        return time.monotonic() - started, None, exc
    return time.monotonic() - started, result, None


def _close(mode: str, router: Any, row: Row) -> None:
    if mode == "sync":
        router.close()
    else:
        _await(router.aclose())
    # What the user handed in, the user closes: an httpx client, a Redis store.
    for owned in (router._client, router.store if row.options.get("store") else None):
        if owned is not None:
            if mode == "sync":
                owned.close()
            else:
                _await(owned.aclose())


def _one(mode: str, router: Any, op: str) -> Callable[[], Any]:
    if mode == "sync":
        return lambda: _call_sync(router, op)
    return lambda: _call_async(router, op)


# -- runners: one per kind of row ------------------------------------------------------


def run_call(row: Row, mode: str, url: Callable[[str], str], key: str) -> dict[str, Any]:
    router = _router(mode, row, [_deployment("up", row, key, url(row.scenario))])
    try:
        elapsed, result, error = _timed(mode, _one(mode, router, row.op))
    finally:
        _close(mode, router, row)
    return {"elapsed": elapsed, "result": result, "error": error}


def run_closed(row: Row, mode: str, url: Callable[[str], str], key: str) -> dict[str, Any]:
    """A call that works, `close()` twice, then calls that must fail and open nothing."""
    router = _router(mode, row, [_deployment("up", row, key, url("ok"))])
    first = _timed(mode, _one(mode, router, row.op))
    _close(mode, router, row)
    _close(mode, router, row)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        elapsed, result, error = _timed(mode, _one(mode, router, row.op))
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    return {
        "elapsed": elapsed,
        "result": result,
        "error": error,
        "extra": {"first_call_ok": first[2] is None, "resource_warnings": unclosed},
    }


def run_hints(row: Row, mode: str, url: Callable[[str], str], key: str) -> dict[str, Any]:
    """One call, then how long `router.health()` says the deployment is set aside."""
    router = _router(mode, row, [_deployment("up", row, key, url(row.scenario))])
    try:
        elapsed, result, error = _timed(mode, _one(mode, router, row.op))
        health = router.health() if mode == "sync" else _await(router.health())
    finally:
        _close(mode, router, row)
    now = time.time()
    report = health["up"]
    until = [t for t in (report.cooldown_until, report.exhausted_until, report.available_at) if t]
    extra = {
        "set_aside": max([t - now for t in until], default=0.0),
        "retry_after": getattr(error, "retry_after", None),
    }
    return {"elapsed": elapsed, "result": result, "error": error, "extra": extra}


def run_hedge(row: Row, mode: str, url: Callable[[str], str], key: str) -> dict[str, Any]:
    """`calls` hedged calls in a row: the primary stalls, the backup answers."""
    deployments = [
        _deployment("primary", row, key, url("stall")),
        _deployment("backup", row, key, url("ok")),
    ]
    routes = {"hedged": {"deployments": ["primary", "backup"], "hedge_after": row.options["hedge_after"]}}
    router = _router(mode, row, deployments, routes=routes)
    times: list[float] = []
    errors: list[BaseException] = []
    result = None
    try:
        for _ in range(row.options["calls"]):
            elapsed, result, error = _timed(mode, _one(mode, router, "chat"))
            times.append(elapsed)
            if error is not None:
                errors.append(error)
    finally:
        _close(mode, router, row)
    extra = {"calls": len(times), "failed": len(errors), "mean": sum(times) / len(times)}
    return {"elapsed": max(times), "result": result, "error": errors[-1] if errors else None, "extra": extra}


def _by_hand(cls: Any, config: dict[str, Any], plugins: Any) -> Any:
    """The router a user writes in code for `config`: attrs classes, no cattrs."""
    import turnout

    def retry(table: Any) -> Any:
        return None if table is None else turnout.RetryOverrides(**table)

    deployments = [
        turnout.Deployment(**{k: v for k, v in d.items() if k != "retry"}, retry_policy=retry(d.get("retry")))
        for d in config["deployments"]
    ]
    kw = {k: config[k] for k in ("deadline", "timeout", "max_retry_wait") if k in config}
    if "breaker" in config:
        kw["breaker"] = turnout.BreakerConfig(**config["breaker"])
    if "budget" in config:
        kw["budget"] = turnout.RetryBudget(**config["budget"])
    if "retry" in config:
        kw["retry_policy"] = retry(config["retry"])
    return cls(deployments, config.get("routes"), plugins=plugins, **kw)


def config_failures(case: ConfigCase, cls: Any, plugins: Any) -> tuple[float, list[str]]:
    """What is wrong with how `cls` refuses `case`, through from_config and in code:
    (the longest construction in seconds, the problems; none when all is well)."""
    import turnout

    problems: list[str] = []
    longest = 0.0
    for how in ("from_config", "code"):
        config = with_value(base_config(), case.path, case.value)
        started = time.monotonic()
        router = None
        try:
            if how == "from_config":
                router = cls.from_config(config, plugins=plugins)
            else:
                router = _by_hand(cls, config, plugins)
        except turnout.ConfigError as exc:
            text = str(exc)
            if case.path not in text and case.path.rsplit(".", 1)[-1] not in text:
                problems.append(f"{case.id} ({how}): the path is not named: {text}")
            if "\n" in text or "Traceback" in text:
                problems.append(f"{case.id} ({how}): not one line: {text!r}")
            for where in leaks(exc, case.secret):
                problems.append(f"{case.id} ({how}): the key is in {where}")
        except Exception as exc:
            problems.append(f"{case.id} ({how}): {type(exc).__name__} instead of ConfigError: {exc}")
        else:
            problems.append(f"{case.id} ({how}): accepted")
        longest = max(longest, time.monotonic() - started)
        if router is not None:
            if hasattr(router, "close"):
                router.close()
            else:
                _await(router.aclose())
    return longest, problems


def run_config(row: Row, mode: str, url: Callable[[str], str], key: str) -> dict[str, Any]:
    import turnout

    cls = turnout.Router if mode == "sync" else turnout.AsyncRouter
    plugins = _plugins("acme")
    longest, problems = 0.0, []
    cases = [case for case in CONFIG_CASES if case.issue == row.issue]
    for case in cases:
        seconds, found = config_failures(case, cls, plugins)
        longest = max(longest, seconds)
        problems.extend(found)
    error = turnout.ConfigError("every case refused") if not problems else None
    return {"elapsed": longest, "result": None, "error": error, "extra": {"cases": len(cases),
            "problems": problems}}  # fmt: skip


RUNNERS = {"call": run_call, "closed": run_closed, "hints": run_hints, "hedge": run_hedge,
           "config": run_config}  # fmt: skip


# -- the child: one row, measured ---------------------------------------------------------


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from /proc (Linux), in MB."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024.0  # kB
    return None


def _start_measuring() -> float:
    """The RSS now, with the peak reset to it. `ru_maxrss` will not do: it starts at
    the parent's RSS (Linux carries the high-water mark across fork and exec), so a
    child of a 200 MB parent would see no growth below 200 MB."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
    now = _status_mb("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_mb() -> float:
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(row_id: str, mode: str, port: int) -> dict[str, Any]:
    import httpx

    import turnout  # noqa: F401 - loaded before the baseline is taken

    row = ROWS[row_id]
    if row.options.get("store") == "redis" and not os.environ.get(REDIS_ENV):
        return {"row": row_id, "mode": mode, "skipped": "no redis-server on PATH"}
    token = f"{row_id}.{mode}.{secrets.token_hex(4)}"
    key = _key(row.provider)
    handler = _Records()
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Warm up what a first call loads (codecs, h11, anyio...), so the baseline holds it.
    warm = Row("warm", "", scenario="ok", op=row.op, deadline=5.0, provider="acme")
    run_call(warm, mode, lambda name: f"http://127.0.0.1:{port}/warmup/{name}/v1", _key("acme"))
    gc.collect()
    baseline = _start_measuring()
    outcome = RUNNERS[row.run](row, mode, lambda name: f"http://127.0.0.1:{port}/{token}/{name}/v1", key)
    peak = _peak_mb()
    root.removeHandler(handler)
    error, result = outcome["error"], outcome["result"]
    found = log_leaks(handler.records, key)
    if error is not None:
        found += leaks(error, key)
    if result is not None:
        found += leaks(result, key, "response")
    time.sleep(0.3)  # the server notices closed connections
    stats = httpx.get(f"http://127.0.0.1:{port}/stats/{token}", timeout=10).json()
    return {
        "row": row_id,
        "mode": mode,
        "elapsed": round(outcome["elapsed"], 3),
        "deadline": row.deadline,
        "error": "" if error is None else type(error).__name__,
        "kind": getattr(getattr(error, "kind", None), "value", None),
        "code": getattr(error, "code", None),
        "message": "" if error is None else str(error)[:300],
        "rss_mb": round(peak - baseline, 1),
        "baseline_mb": round(baseline, 1),
        "leaks": sorted(set(found)),
        "stats": stats,
        "extra": outcome.get("extra", {}),
    }


# -- the parent: children, a few at a time -----------------------------------------------


@contextlib.contextmanager
def upstreams() -> Iterator[tuple[int, str | None]]:
    """The hostile server's port, and the URL of a Redis for the rows that keep their
    state there (None when redis-server is not installed)."""
    from .upstream import Hostile

    server = Hostile().start()
    redis = None
    try:
        if shutil.which("redis-server"):
            from tests.state.conftest import RedisServer

            redis = RedisServer(Path(tempfile.mkdtemp(prefix="hostile-redis-"))).start()
        yield server.port, redis.url if redis is not None else None
    finally:
        server.close()
        if redis is not None:
            redis.stop()


def _spawn(row_id: str, mode: str, port: int, redis: str | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.hostile.probe", "--child", row_id, mode, str(port)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning", REDIS_ENV: redis or ""}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"row": row_id, "mode": mode, "crashed": done.stderr[-3000:] or f"exit {done.returncode}"}
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


def run_rows(
    rows: Iterable[Row],
    port: int,
    redis: str | None = None,
    modes: Iterable[str] = MODES,
    workers: int = WORKERS,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (row, mode) in its own child, `workers` at a time (HEAVY_WORKERS of them for
    the heavy rows); the longest first."""
    jobs = sorted(((r, m) for r in rows for m in modes), key=lambda job: -job[0].deadline)
    with (
        concurrent.futures.ThreadPoolExecutor(HEAVY_WORKERS) as heavy,
        concurrent.futures.ThreadPoolExecutor(max(workers - HEAVY_WORKERS, 1)) as light,
    ):
        futures = {
            (r.id, m): (heavy if r.heavy else light).submit(_spawn, r.id, m, port, redis) for r, m in jobs
        }
        return {job: future.result() for job, future in futures.items()}


def table(outcomes: dict[tuple[str, str], dict[str, Any]], rows: Iterable[Row]) -> str:
    """The outcomes as a markdown table: a line per row, sync and async side by side."""

    def cell(outcome: dict[str, Any] | None) -> str:
        if outcome is None:
            return "-"
        if "crashed" in outcome:
            return "crashed"
        if "skipped" in outcome:
            return f"skipped ({outcome['skipped']})"
        error = outcome["error"] or "ok"
        leaked = f", **key in {len(outcome['leaks'])} places**" if outcome["leaks"] else ""
        return f"{outcome['elapsed']:.2f} s, +{outcome['rss_mb']:.0f} MB, {error}{leaked}"

    lines = [
        "| # | row | deadline | sync: time, peak RSS, error | async: time, peak RSS, error |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        sync, asyn = outcomes.get((row.id, "sync")), outcomes.get((row.id, "async"))
        what = f"{row.what} (`{row.id}`)"
        lines.append(f"| {row.issue or ''} | {what} | {row.deadline:g} s | {cell(sync)} | {cell(asyn)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile.probe", description=__doc__)
    parser.add_argument("rows", nargs="*", help="row ids (default: all)")
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    parser.add_argument("--child", nargs=3, metavar=("ROW", "MODE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row_id, mode, port = args.child
        print(json.dumps(child(row_id, mode, int(port)), default=str))
        return 0
    rows = [ROWS[r] for r in args.rows] if args.rows else ROWS_LIST
    with upstreams() as (port, redis):
        started = time.monotonic()
        outcomes = run_rows(rows, port, redis)
        took = time.monotonic() - started
    if args.json:
        print(json.dumps([outcomes[k] for k in sorted(outcomes)], indent=1, default=str))
    else:
        print(table(outcomes, rows))
        print(f"\n{len(outcomes)} runs in {took:.0f} s (python -m tests.hostile.probe)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
