"""PodDisruptionBudget: drains take auth pods down one at a time.

maxUnavailable=1 rather than minAvailable: with a single replica, minAvailable=1 would block
node drains forever.
"""

from __future__ import annotations

from typing import Any

from phoenix_operator.builders.common import Owner, metadata, selector


def build_pdb(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, owner.auth_name, "auth"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner, "auth")}},
    }
