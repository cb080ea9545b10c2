"""Sessions for the turnout monorepo.

Every distribution is installed non-editable, as users get it: a missing
dependency, module or entry point fails here. Plugin sessions are discovered
from plugins/*/ (as GalacticDynamics/unxt does), so adding a plugin needs no
edit to this file.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = False

ROOT = Path(__file__).parent
PLUGINS = sorted(p.name for p in (ROOT / "plugins").glob("turnout-*") if (p / "pyproject.toml").is_file())
TEST_DEPS = ["pytest>=8", "pytest-asyncio>=0.24", "respx>=0.21", "hypothesis>=6"]
LINT_DEPS = ["ruff>=0.6"]
TYPE_DEPS = ["mypy>=1.11", "pytest>=8", "respx>=0.21", "types-redis"]
DOCS_DEPS = ["mkdocs>=1.6", "mkdocs-material>=9.5"]


def short(plugin: str) -> str:
    return plugin.removeprefix("turnout-")


def install_all(session: nox.Session, *extra: str) -> None:
    session.install("./core[redis,cli,fake]", *[f"./plugins/{p}" for p in PLUGINS], *extra)


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole suite: core, every plugin and the integration tests, all installed."""
    install_all(session, *TEST_DEPS, "openai>=1.40", "httpx-aiohttp>=0.1")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def core(session: nox.Session) -> None:
    """The core alone, with no plugin installed."""
    session.install("./core", *TEST_DEPS)
    session.run("pytest", "tests/core", *session.posargs)


@nox.session(python="3.11")
@nox.parametrize("plugin", PLUGINS)
def plugin(session: nox.Session, plugin: str) -> None:
    """One plugin with only the core beside it."""
    session.install("./core", f"./plugins/{plugin}", *TEST_DEPS, "openai>=1.40")
    session.run("pytest", f"tests/{short(plugin)}", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install(*LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    install_all(session, *TYPE_DEPS)
    packages = ["turnout", *[p.replace("-", "_") for p in PLUGINS]]
    args = [arg for name in packages for arg in ("-p", name)]
    session.run("mypy", "--strict", *args)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    install_all(session, *DOCS_DEPS)
    session.run("python", "docs/gen_tables.py")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(ROOT / "site"), env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """Fake gateways on loopback, a router over all five providers, scripted failures."""
    install_all(session)
    session.run("turnout", "demo", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    install_all(session, "openai>=1.40", "litellm", "httpx-aiohttp")
    session.run("python", "bench/run.py", *session.posargs)
