"""One version: the repo's VERSION file. The distributions read it at build time; what cannot read
it (the Helm chart, the CRD's default image, docs, the OpenAPI document) must say the same."""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

import pytest
import yaml

import phoenix_operator
from phoenix_operator.spec import DEFAULT_AUTH_IMAGE

REPO = Path(__file__).resolve().parents[2]
VERSION = (REPO / "VERSION").read_text().strip()
# Every reference to one of our images, wherever it is written down.
IMAGE_REF = re.compile(r"ghcr\.io/phoenix-dev/phoenix-(?:auth|operator|redis):([\w.+-]+)")
STATED_IN = ["crds", "helm", "manifests", "docs", "README.md", "operator/phoenix_operator"]


def test_version_file_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), VERSION


@pytest.mark.parametrize("dist", ["phoenix-auth", "phoenix-operator", "phoenix-dev-tools"])
def test_distributions_carry_the_version(dist: str) -> None:
    assert md.version(dist) == VERSION, "installed from an older VERSION: run bash scripts/venv.sh"


def test_each_distribution_reads_the_one_file() -> None:
    for folder in ("auth_service", "operator", "tools"):
        link = REPO / folder / "VERSION"
        assert link.is_symlink(), f"{folder}/VERSION must be a link to the repo's VERSION"
        assert link.resolve() == (REPO / "VERSION").resolve()


def test_operator_and_its_default_auth_image() -> None:
    assert phoenix_operator.__version__ == VERSION
    assert f"ghcr.io/phoenix-dev/phoenix-auth:{VERSION}" == DEFAULT_AUTH_IMAGE


def test_chart_version_and_app_version() -> None:
    chart = yaml.safe_load((REPO / "helm/phoenix-operator/Chart.yaml").read_text())
    assert (str(chart["version"]), str(chart["appVersion"])) == (VERSION, VERSION)


def test_every_written_image_reference_has_the_version() -> None:
    found = []
    for place in STATED_IN:
        root = REPO / place
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if (
                path.suffix not in {".yaml", ".yml", ".md", ".py", ".json", ".tpl", ".txt"}
                or not path.is_file()
            ):
                continue
            found += [(path.relative_to(REPO).as_posix(), tag) for tag in IMAGE_REF.findall(path.read_text())]
    assert found, "no image reference found: the pattern or the places are wrong"
    assert [f for f in found if f[1] != VERSION] == []


def test_openapi_document_version() -> None:
    """The auth service's OpenAPI `info.version`, while it is written as a literal."""
    source = (REPO / "auth_service/phoenix_auth/openapi.py").read_text()
    assert [v for v in re.findall(r'"version":\s*"([^"]+)"', source) if v != VERSION] == []
