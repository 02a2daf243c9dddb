"""The images `scripts/images.sh` builds: what a platform team's admission checks and security review
look at (user, labels, contents), read from the built images with buildah."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from e2e_kube import REPO
from e2e_pods import VERSION

IMAGES = {name: f"ghcr.io/phoenix-dev/phoenix-{name}:{VERSION}" for name in ("auth", "operator", "redis")}


def _buildah(*args: str) -> str:
    return subprocess.run(["buildah", *args], capture_output=True, text=True, check=True, timeout=120).stdout


@pytest.fixture(scope="module")
def run_in(built_images: list[str]) -> Iterator[dict[str, object]]:
    """run_in[name](shell command) → its output, run in a working container of that image as the
    image's own user."""
    assert sorted(built_images) == sorted(IMAGES.values())
    containers = {name: _buildah("from", "--pull-never", ref).strip() for name, ref in IMAGES.items()}

    def runner(name: str):
        def run(command: str) -> str:
            return _buildah("run", "--runtime", "runc", containers[name], "--", "sh", "-c", command)

        return run

    try:
        yield {name: runner(name) for name in IMAGES}
    finally:
        for c in containers.values():
            subprocess.run(["buildah", "rm", c], capture_output=True, check=False)


def _config(ref: str) -> dict[str, object]:
    return dict(json.loads(_buildah("inspect", "--type", "image", ref))["OCIv1"]["config"])


@pytest.mark.parametrize(
    ("name", "uid", "user"),
    [("auth", 10001, "phoenix"), ("operator", 10001, "phoenix"), ("redis", 999, "redis")],
)
def test_images_run_as_a_non_root_user_that_exists_in_passwd(run_in, name: str, uid: int, user: str) -> None:
    config = _config(IMAGES[name])
    assert config["User"] == f"{uid}:{uid}"
    # The name lookup Kopf's getpass.getuser() does (it crashed an operator pod without the entry).
    assert run_in[name]("id -un; id -u").split() == [user, str(uid)]


@pytest.mark.parametrize("name", list(IMAGES))
def test_images_carry_oci_labels_with_version_and_revision(name: str) -> None:
    labels = dict(_config(IMAGES[name]).get("Labels") or {})
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head
    assert labels["org.opencontainers.image.title"] == f"phoenix-{name}"
    assert labels["org.opencontainers.image.source"].startswith("https://")


@pytest.mark.parametrize("name", list(IMAGES))
def test_no_compiler_package_manager_or_pip_in_any_image(run_in, name: str) -> None:
    found = run_in[name](
        "for t in gcc cc c++ make apt apt-get pip pip3; do command -v $t; done; "
        "ls /opt/phoenix/bin/pip* /opt/phoenix/lib/python3.11/site-packages/pip 2>/dev/null; true"
    )
    assert found.split() == []


def _importable(run, modules: list[str]) -> dict[str, bool]:
    code = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    return dict(json.loads(run(f"python3 -c '{code}' {' '.join(modules)}")))


def test_auth_image_has_the_service_and_not_the_operator_or_tooling(run_in) -> None:
    found = _importable(
        run_in["auth"],
        ["phoenix_auth", "argon2", "uvicorn", "kopf", "kubernetes", "phoenix_operator", "phoenix_bench"],
    )
    assert found == {
        "phoenix_auth": True,
        "argon2": True,
        "uvicorn": True,
        "kopf": False,
        "kubernetes": False,
        "phoenix_operator": False,
        "phoenix_bench": False,
    }
    assert "phoenix-auth" in run_in["auth"]("phoenix-auth --help")


def test_operator_image_has_kopf_and_not_the_service_stack_or_tooling(run_in) -> None:
    """The operator talks to the API on Kopf's aiohttp session: no Kubernetes client (126 MB of the
    venv before, and ~19 MB of RSS once Kopf imports it too)."""
    found = _importable(
        run_in["operator"],
        [
            "phoenix_operator",
            "kopf",
            "kubernetes",
            "argon2",
            "starlette",
            "uvicorn",
            "psycopg_pool",
            "phoenix_auth",
            "phoenix_bench",
        ],
    )
    assert found == {
        "phoenix_operator": True,
        "kopf": True,
        "kubernetes": False,
        "argon2": False,
        "starlette": False,
        "uvicorn": False,
        "psycopg_pool": False,
        "phoenix_auth": False,
        "phoenix_bench": False,
    }


def test_redis_image_runs_redis_server_with_the_config_on_stdin(run_in) -> None:
    # Config (with a password) on stdin, never in argv, as the operator's managed Redis reads its ACL
    # users (tests/operator/test_managed_redis_acl.py runs that exact command).
    out = run_in["redis"](
        "printf 'requirepass s3cret\\n' | redis-server - --port 6399 --save '' --appendonly no --dir /data "
        "--daemonize yes --logfile /data/redis.log && sleep 0.5 "
        "&& redis-cli -p 6399 -a s3cret --no-auth-warning ping && redis-cli -p 6399 ping; "
        "redis-cli -p 6399 -a s3cret --no-auth-warning shutdown nosave >/dev/null 2>&1; true"
    )
    answers = [line for line in out.splitlines() if line.startswith(("PONG", "NOAUTH"))]
    assert [a.split()[0] for a in answers] == ["PONG", "NOAUTH"], out  # with the password; without it
