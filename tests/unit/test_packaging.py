"""The product split as the images see it: two wheels and two hash-locked runtime sets, each with
only what its own code needs, and the dev tooling in neither.

The wheels are built from copies of auth_service/ and operator/ (setuptools from the dev lock, no
network); dependency lists are held to the code's imports (lazy ones included) and the locks to the
pyproject files through the installed metadata of the dev venv, resolved for the images' Python.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()

# distribution -> (folder, import package, runtime lock or None)
DISTS = {
    "phoenix-auth": ("auth_service", "phoenix_auth", "auth_service/requirements.lock"),
    "phoenix-operator": ("operator", "phoenix_operator", "operator/requirements.lock"),
    "phoenix-dev-tools": ("tools", "phoenix_bench", None),
}
PRODUCTS = ["phoenix-auth", "phoenix-operator"]
LOCAL = {canonicalize_name(d) for d in DISTS}
DEV_LOCK = "requirements-dev.lock"

# The other product's stack and the dev tooling: never in a product's requirements or image lock.
DEV_ONLY = {"phoenix-dev-tools", "matplotlib", "py-spy", "pytest", "ruff", "uv"}
FORBIDDEN = {
    "phoenix-auth": DEV_ONLY | {"phoenix-operator", "kopf", "kubernetes"},
    # kubernetes: the operator talks to the API on Kopf's aiohttp session (importing the client,
    # which Kopf then also imports, cost ~19 MB of RSS).
    "phoenix-operator": DEV_ONLY
    | {
        "phoenix-auth",
        "argon2-cffi",
        "starlette",
        "psycopg-pool",
        "uvicorn",
        "bcrypt",
        "redis",
        "kubernetes",
    },
}
# Declared but never imported: loaded by name or run as a program.
NOT_IMPORTED = {
    "phoenix-auth": {"uvloop", "httptools"},  # uvicorn loop="uvloop", http="httptools" (server.py)
    "phoenix-operator": set(),
    "phoenix-dev-tools": {"phoenix-operator", "py-spy"},  # both run as programs
}
FIRST_PARTY = {
    "phoenix_auth": "phoenix-auth",
    "phoenix_operator": "phoenix-operator",
    "phoenix_bench": None,
    "phoenix_testkit": None,
}
# Import packages a distribution holds besides DISTS' one.
MORE_PACKAGES = {"phoenix-dev-tools": ("phoenix_testkit",)}

# Debian 12's python3, the images' interpreter (scripts/lock.sh resolves for it).
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}


def pyproject(dist: str) -> dict:
    return tomllib.loads((REPO / DISTS[dist][0] / "pyproject.toml").read_text())


def declared(dist: str, *, extras: bool = False) -> list[Requirement]:
    project = pyproject(dist)["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    if extras:
        for items in project.get("optional-dependencies", {}).values():
            reqs += [Requirement(r) for r in items]
    return reqs


def names(reqs: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def read_lock(rel: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes) of a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in (REPO / rel).read_text().splitlines():
        text = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not text:
            continue
        if text.startswith("--hash="):
            assert current, f"{rel}: a hash before any requirement"
            pins[current][1].append(text.removeprefix("--hash="))
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", text)
        assert m, f"{rel}: not a pinned requirement: {line!r}"
        current = canonicalize_name(m.group(1))
        pins[current] = (m.group(2), [])
    return pins


def closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need on the images' Python, from the dev venv's metadata."""
    seen: set[str] = set()
    todo = [(r, "") for r in roots]
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({**TARGET, "extra": extra}):
            continue
        name = canonicalize_name(req.name)
        wanted = [(name, "")] + [(name, e) for e in sorted(req.extras)]
        for dist_name, ext in wanted:
            key = f"{dist_name}[{ext}]"
            if key in seen:
                continue
            seen.add(key)
            try:
                requires = md.requires(dist_name) or []
            except md.PackageNotFoundError:
                pytest.fail(f"{dist_name} is not installed in the dev venv: run bash scripts/venv.sh")
            for text in requires:
                sub = Requirement(text)
                marker = sub.marker
                if marker is None or Marker(str(marker)).evaluate({**TARGET, "extra": ext}):
                    todo.append((Requirement(re.sub(r";.*", "", text)), ""))
    return {k.split("[", 1)[0] for k in seen}


def imported_distributions(dist: str) -> set[str]:
    """Third-party distributions the package imports anywhere (module level or inside functions)."""
    folder, package, _ = DISTS[dist]
    providers = md.packages_distributions()
    found: set[str] = set()
    packages = (package, *MORE_PACKAGES.get(dist, ()))
    paths = sorted(p for pkg in packages for p in (REPO / folder / pkg).rglob("*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in packages:
                    continue
                if top in FIRST_PARTY:
                    found.add(canonicalize_name(FIRST_PARTY[top] or top))
                    continue
                assert top in providers, (
                    f"{path.relative_to(REPO)} imports {top}, which nothing installed provides"
                )
                found |= {canonicalize_name(d) for d in providers[top]}
    return found


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each product's wheel, built the way an image build does (pip wheel --no-deps)."""
    out = tmp_path_factory.mktemp("wheels")
    built = {}
    for dist in PRODUCTS:
        folder = DISTS[dist][0]
        src = tmp_path_factory.mktemp("src") / folder
        # a copy: the build's own folders stay out of the checkout; the VERSION link becomes a file
        shutil.copytree(
            REPO / folder, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
        )
        pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        subprocess.run(
            [*pip_wheel, "--no-index", "-w", str(out), str(src)],
            check=True,
            capture_output=True,
            timeout=180,
        )
        (built[dist],) = out.glob(f"{canonicalize_name(dist).replace('-', '_')}-*.whl")
    return built


def wheel_metadata(wheel: Path) -> tuple[Message, list[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        files = zf.namelist()
        (meta,) = [f for f in files if f.endswith(".dist-info/METADATA")]
        (entry,) = [f for f in files if f.endswith(".dist-info/entry_points.txt")]
        return Parser().parsestr(zf.read(meta).decode()), files, zf.read(entry).decode()


@pytest.mark.parametrize("dist", PRODUCTS)
def test_wheel_requires_only_its_own_stack(wheels: dict[str, Path], dist: str) -> None:
    meta, _, entry_points = wheel_metadata(wheels[dist])
    assert meta["Name"] == dist
    assert meta["Version"] == VERSION
    requires = {canonicalize_name(Requirement(r).name) for r in meta.get_all("Requires-Dist") or []}
    assert requires == names(declared(dist))
    assert not requires & FORBIDDEN[dist], f"{dist} requires {sorted(requires & FORBIDDEN[dist])}"
    package = DISTS[dist][1]
    assert f"{dist} = {package}.cli:main" in entry_points


@pytest.mark.parametrize("dist", PRODUCTS)
def test_wheel_holds_the_whole_package_and_no_tooling(wheels: dict[str, Path], dist: str) -> None:
    folder, package, _ = DISTS[dist]
    _, files, _ = wheel_metadata(wheels[dist])
    assert {f.split("/")[0] for f in files} == {package, f"{package}-{VERSION}.dist-info"}
    assert not [f for f in files if {"bench", "phoenix_bench", "tests"} & set(Path(f).parts)]
    source = {
        p.relative_to(REPO / folder).as_posix()
        for p in (REPO / folder / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert source - set(files) == set(), "files of the package missing from its wheel"


@pytest.mark.parametrize("dist", list(DISTS))
def test_declared_dependencies_are_what_the_code_imports(dist: str) -> None:
    wanted = names(declared(dist, extras=True))
    used = imported_distributions(dist)
    assert used - wanted == set(), f"{dist} imports undeclared distributions"
    assert wanted - used - NOT_IMPORTED[dist] == set(), f"{dist} declares distributions it never imports"


@pytest.mark.parametrize("dist", PRODUCTS)
def test_runtime_lock_is_the_closure_of_the_pyproject(dist: str) -> None:
    lock = read_lock(DISTS[dist][2])
    assert set(lock) == closure(declared(dist)) - LOCAL, "stale lock: run bash scripts/lock.sh"
    for req in declared(dist):
        pinned = lock[canonicalize_name(req.name)][0]
        assert req.specifier.contains(pinned, prereleases=True), f"{req} but the lock pins {pinned}"
    assert not set(lock) & FORBIDDEN[dist], (
        f"the {dist} image would get {sorted(set(lock) & FORBIDDEN[dist])}"
    )


def test_dev_lock_is_the_closure_of_products_tools_and_groups() -> None:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    groups = [Requirement(r) for name in ("test", "tooling") for r in root["dependency-groups"][name]]
    roots = (
        declared("phoenix-auth") + declared("phoenix-operator") + declared("phoenix-dev-tools", extras=True)
    )
    lock = read_lock(DEV_LOCK)
    assert set(lock) == closure(roots + groups) - LOCAL, "stale lock: run bash scripts/lock.sh"
    for req in roots + groups:
        if canonicalize_name(req.name) not in LOCAL:
            assert req.specifier.contains(lock[canonicalize_name(req.name)][0], prereleases=True), str(req)


@pytest.mark.parametrize("dist", PRODUCTS)
def test_images_ship_the_versions_the_tests_ran(dist: str) -> None:
    runtime, dev = read_lock(DISTS[dist][2]), read_lock(DEV_LOCK)
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}
    assert all(hashes for _, hashes in runtime.values()), "every pin needs its hashes (--require-hashes)"


def test_dev_venv_has_the_locked_versions() -> None:
    """What the tests import is what the lock says (scripts/venv.sh installs it)."""
    drift = {n: (v, md.version(n)) for n, (v, _) in read_lock(DEV_LOCK).items() if md.version(n) != v}
    assert drift == {}, "locked vs installed; run bash scripts/venv.sh"
