"""The CRD file: names, structural schema, defaults that agree with the typed spec, printer columns.

The real API server checks structure and compiles CEL (H4's e2e and tests/operator/test_crd_apiserver.py);
here we catch the mistakes that are cheap to find offline: a CRD field the operator would silently
ignore, a default that differs from the model's, a status field the server would prune.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from phoenix_operator.spec import PhoenixAuthSpec, parse_spec

CRD_PATH = pathlib.Path(__file__).parents[3] / "crds" / "phoenixauths.auth.phoenix.dev.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def schema(crd) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_names(crd):
    assert crd["metadata"]["name"] == "phoenixauths.auth.phoenix.dev"
    assert crd["spec"]["group"] == "auth.phoenix.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("PhoenixAuth", "phoenixauths", ["pxa"])
    v = crd["spec"]["versions"][0]
    assert v["name"] == "v1alpha1" and v["served"] and v["storage"]
    assert v["subresources"] == {"status": {}}


def test_printer_columns_point_at_declared_status_fields(crd, schema):
    cols = {c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(cols)[:5] == ["Ready", "Replicas", "Pool/pod", "Cache", "Migrations"]
    assert "Age" in cols
    status = schema["properties"]["status"]["properties"]
    for path in cols.values():
        if path.startswith(".status."):
            top = path.split(".")[2].split("[")[0]
            assert top in status, f"{path} is not declared in the status schema (it would be pruned)"


def _walk_structural(node: dict[str, Any], path: str) -> None:
    """Every node has a type (or is int-or-string / preserve-unknown), as structural schemas require."""
    if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
        return
    assert "type" in node, f"{path} has no type"
    for name, child in (node.get("properties") or {}).items():
        _walk_structural(child, f"{path}.{name}")
    if "items" in node:
        _walk_structural(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        _walk_structural(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural(schema):
    _walk_structural(schema, "")


def test_status_declares_what_the_operator_writes(schema):
    status = schema["properties"]["status"]["properties"]
    for field in (
        "observedGeneration",
        "phase",
        "conditions",
        "replicas",
        "readyReplicas",
        "replicasSummary",
        "poolPerPod",
        "poolPerProcess",
        "connectionBudget",
        "connectionBudgetSource",
        "cache",
        "configHash",
        "redis",
        "migrations",
        "monitoring",
        "message",
        "kopf",
    ):
        assert field in status
    assert set(status["migrations"]["properties"]) >= {"indexSet", "state", "jobName", "completedAt"}
    cond = status["conditions"]["items"]["properties"]
    assert set(cond) >= {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}


def _model_aliases(model: type[BaseModel]) -> dict[str, Any]:
    out = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        out[alias] = info
    return out


def _compare(node: dict[str, Any], model: type[BaseModel], path: str) -> None:
    fields = _model_aliases(model)
    for prop, child in (node.get("properties") or {}).items():
        assert prop in fields, f"CRD field {path}.{prop} is not read by the operator's spec model"
        ann = fields[prop].annotation
        sub = getattr(ann, "__args__", None)
        candidates = [ann, *(sub or ())]
        nested = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        descend = nested is not None and nested.__name__ != "Resources" and "properties" in child
        if descend:
            _compare(child, nested, f"{path}.{prop}")


def test_every_crd_field_is_in_the_model(schema):
    _compare(schema["properties"]["spec"], PhoenixAuthSpec, "spec")


def _defaulted(node: dict[str, Any]) -> Any:
    """Apply the CRD's defaults to an empty object, as the API server does."""
    out: dict[str, Any] = {}
    for name, child in (node.get("properties") or {}).items():
        if "default" in child:
            value = child["default"]
            if child.get("type") == "object" and isinstance(value, dict):
                value = {**_defaulted(child), **value}
            out[name] = value
    return out


def test_crd_defaults_equal_model_defaults(schema):
    spec_schema = schema["properties"]["spec"]
    raw = _defaulted(spec_schema)
    raw["database"] = {
        "secretRef": {"name": "db", "key": "DATABASE_URL"},
        "connectionBudget": 100,
        "detect": False,
        "reservedConnections": 5,
    }
    from_crd = parse_spec(raw)
    from_model = parse_spec({"database": {"secretRef": {"name": "db"}, "connectionBudget": 100}})
    # Managed Redis defaults live in the CRD only once `managed` is given; compare with it present.
    managed_defaults = _defaulted(spec_schema["properties"]["redis"]["properties"]["managed"])
    assert parse_spec({**raw, "redis": {"mode": "managed", "managed": managed_defaults}}).redis.managed == (
        from_model.redis.managed_or_default
    )
    assert from_crd == from_model


def _rules(node: dict[str, Any]) -> list[str]:
    return [v["rule"] for v in node.get("x-kubernetes-validations") or []]


def test_crd_rules_use_the_spec_model_s_patterns_and_limits(schema):
    """The CEL rules and the typed model refuse the same things: one list of reserved names, one
    pattern for secret-looking names and credential URLs, one width limit per address family."""
    from phoenix_operator.spec import MIN_TRUSTED_PREFIX, RESERVED_ENV, SECRET_ENV_NAME, URL_WITH_CREDENTIALS

    auth = schema["properties"]["spec"]["properties"]["authService"]["properties"]
    extra = auth["extraEnv"]
    (reserved_rule,) = [r for r in _rules(extra) if "DATABASE_URL" in r]
    assert set(re.findall(r"'([A-Z0-9_]+)'", reserved_rule)) == RESERVED_ENV
    item_rules = " ".join(_rules(extra["items"]))
    assert f"matches('{SECRET_ENV_NAME}')" in item_rules
    assert f"matches('{URL_WITH_CREDENTIALS}')" in item_rules
    proxy_rules = " ".join(_rules(auth["trustedProxies"]["items"]))
    assert f"family() == 4 ? {MIN_TRUSTED_PREFIX[4]} : {MIN_TRUSTED_PREFIX[6]}" in proxy_rules
    assert "value" in extra["items"]["properties"] and "default" not in extra["items"]["properties"]["value"]
