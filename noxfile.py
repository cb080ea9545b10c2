"""Sessions for the turnout monorepo.

Every distribution is installed non-editable, as users get it: a missing
dependency, module or entry point fails here. Plugin sessions are discovered
from plugins/*/ (as GalacticDynamics/unxt does), so adding a plugin needs no
edit to this file.

Sessions name no Python version: each runs on the interpreter nox runs on
(`./noxw` runs nox from .venv, made with the first Python >= 3.11 it finds).
`-P 3.13` (`--force-python`, a version or a path) runs them on another one;
CI runs the suite on the oldest and the newest supported Python this way.
"""

from __future__ import annotations

import json
from pathlib import Path

import nox
from packaging.requirements import Requirement

nox.needs_version = ">=2024.4.15"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PLUGINS = sorted(p.name for p in (ROOT / "plugins").glob("turnout-*") if (p / "pyproject.toml").is_file())
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "respx>=0.21", "hypothesis>=6"]
SUITE_DEPS = [*TEST_DEPS, "openai>=1.40", "httpx-aiohttp>=0.1"]
LINT_DEPS = ["ruff>=0.6"]
TYPE_DEPS = ["mypy>=1.11", "pytest>=8", "respx>=0.21", "types-redis"]
DOCS_DEPS = ["mkdocs>=1.6", "mkdocs-material>=9.5"]


def short(plugin: str) -> str:
    return plugin.removeprefix("turnout-")


def plugin_spec(plugin: str) -> str:
    """What pip installs for a plugin: with its `test` extra when it declares one (what
    its tests need beside it, such as turnout-otel's OpenTelemetry SDK)."""
    project = nox.project.load_toml(ROOT / "plugins" / plugin / "pyproject.toml")["project"]
    return (
        f"./plugins/{plugin}[test]"
        if "test" in project.get("optional-dependencies", {})
        else f"./plugins/{plugin}"
    )


def install_all(session: nox.Session, *extra: str) -> None:
    session.install("./core[redis,cli,fake,server]", *[plugin_spec(p) for p in PLUGINS], *extra)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite: core, every plugin and the integration tests, all installed."""
    install_all(session, *SUITE_DEPS)
    session.run("pytest", *session.posargs)


@nox.session
@nox.parametrize("bound", ["oldest", "newest"], ids=["oldest", "newest"])
def httpx(session: nox.Session, bound: str) -> None:
    """The whole suite on the oldest and on the newest httpx the core allows."""
    allowed = core_requirement("httpx")  # httpx>=0.27,<1: the bounds are written once, there
    version = lowest(allowed) if bound == "oldest" else newest(session, allowed)
    install_all(session, *SUITE_DEPS, f"httpx=={version}")
    installed = session.run(
        "python", "-c", "import importlib.metadata as m; print(m.version('httpx'))", silent=True
    )
    session.log(f"httpx {str(installed).strip()} ({bound} allowed by {allowed})")
    session.run("pytest", *session.posargs)


@nox.session
def core(session: nox.Session) -> None:
    """The core alone, with no plugin installed."""
    session.install("./core", *TEST_DEPS)
    session.run("pytest", "tests/core", *session.posargs)


@nox.session
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin with only the core beside it."""
    session.install("./core", plugin_spec(plugin), *TEST_DEPS, "openai>=1.40")
    session.run("pytest", f"tests/{short(plugin)}", *session.posargs)


@nox.session
def example(session: nox.Session) -> None:
    """The example third-party plugin, examples/turnout-acme, as its author ships it:
    installed non-editable beside nothing but the core and its testing extra; its
    tests (the conformance kit included) run from its own folder, then mypy."""
    session.install("./core[testing]", "./examples/turnout-acme", "mypy>=1.11")
    session.chdir(ROOT / "examples" / "turnout-acme")
    session.run("pytest", *session.posargs)
    session.run("mypy", "--strict", "-p", "turnout_acme")
    session.run("mypy", "--strict", "tests")


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install_all(session, *TYPE_DEPS)
    packages = ["turnout", *[p.replace("-", "_") for p in PLUGINS]]
    args = [arg for name in packages for arg in ("-p", name)]
    session.run("mypy", "--strict", *args)


@nox.session
def docs(session: nox.Session) -> None:
    install_all(session, *DOCS_DEPS)
    session.run("python", "docs/gen_tables.py")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def demo(session: nox.Session) -> None:
    """Fake gateways on loopback, a router over all five providers, scripted failures."""
    install_all(session)
    session.run("turnout", "demo", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests (tests/properties) with many examples until a time budget, then
    stop: `nox -s fuzz -- 600` (seconds; default $TURNOUT_FUZZ_SECONDS, else 180).
    Not a default session, nor part of .ci/run."""
    install_all(session, *TEST_DEPS)
    session.run("python", "-m", "tests.properties.fuzz", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Resilience with the defaults: the simulation, then the chaos benchmark over loopback
    (about five minutes; `-- --quick` for two). Not in the default sessions or CI."""
    session.install("./core")
    session.run("python", "bench/resilience_sim.py", *session.posargs)
    session.run("python", "bench/chaos.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    install_all(session, "openai>=1.40", "litellm", "httpx-aiohttp", "httpx-sse")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(name="concurrency-bench")
def concurrency_bench(session: nox.Session) -> None:
    """AsyncRouter's transport at 50 and 200 concurrent calls, against raw httpx and
    httpx-aiohttp: its own section of docs/benchmarks.md (about three minutes)."""
    install_all(session, "httpx-aiohttp", "httpx-sse")
    session.run("python", "bench/concurrency_bench.py", *session.posargs)


@nox.session(name="serve-bench")
def serve_bench(session: nox.Session) -> None:
    """The server cell: turnout serve and the LiteLLM proxy (litellm[proxy], in a venv of its
    own so neither install changes the other's dependencies) before one loopback upstream."""
    install_all(session, "psutil")
    proxy = Path(session.create_tmp()) / "litellm-proxy"
    session.run("python", "-m", "venv", "--clear", str(proxy))
    session.run(
        str(proxy / "bin" / "python"), "-m", "pip", "install", "--quiet", "litellm[proxy]", external=True
    )
    session.run(
        "python", "bench/serve_bench.py", "--litellm", str(proxy / "bin" / "litellm"), *session.posargs
    )


def core_requirement(name: str) -> Requirement:
    """A dependency as core/pyproject.toml declares it."""
    declared = nox.project.load_toml(ROOT / "core/pyproject.toml")["project"]["dependencies"]
    [requirement] = [req for req in map(Requirement, declared) if req.name == name]
    return requirement


def lowest(requirement: Requirement) -> str:
    """The version a requirement's `>=` bound names (`httpx>=0.27,<1` -> "0.27", that is 0.27.0)."""
    [bound] = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return bound


def newest(session: nox.Session, requirement: Requirement) -> str:
    """The version pip picks for `requirement` alone: the newest the index has within its bounds.

    Pinning it afterwards makes the install fail loudly if another dependency
    holds httpx back, instead of quietly testing an older one.
    """
    report = Path(session.create_tmp()) / f"{requirement.name}.json"
    session.run(
        "python", "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--no-deps",
        "--report", str(report), str(requirement),
    )  # fmt: skip
    [item] = json.loads(report.read_text())["install"]
    return str(item["metadata"]["version"])
