"""The end-to-end suite may skip on a laptop without the control plane, but never in CI:
a skipped end-to-end test is not a passing one (see tests/e2e/e2e_kube.py `unavailable`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_kube import unavailable


def test_unavailable_control_plane_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="etcd would not start"):
        unavailable("etcd would not start")


def test_unavailable_control_plane_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="etcd would not start"):
        unavailable("etcd would not start")
