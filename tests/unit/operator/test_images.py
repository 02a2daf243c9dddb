"""The image allow-list: prefixes match on a path boundary, '*' allows any, bad prefixes are refused."""

from __future__ import annotations

import pytest

from phoenix_operator.images import PROJECT_IMAGE_PREFIX, image_allowed, validate_prefixes
from phoenix_operator.spec import DEFAULT_AUTH_IMAGE, DEFAULT_REDIS_IMAGE


@pytest.mark.parametrize(
    ("image", "prefixes", "allowed"),
    [
        ("ghcr.io/phoenix-dev/phoenix-auth:0.1.0", [PROJECT_IMAGE_PREFIX], True),
        ("ghcr.io/phoenix-dev-evil/phoenix-auth:0.1.0", [PROJECT_IMAGE_PREFIX], False),
        ("ghcr.io/phoenix-dev/phoenix-auth:1", ["ghcr.io/phoenix-dev"], True),
        ("ghcr.io/phoenix-devx/a:1", ["ghcr.io/phoenix-dev"], False),
        ("ghcr.io/phoenix-dev/phoenix-auth@sha256:" + "a" * 64, ["ghcr.io/phoenix-dev/phoenix-auth"], True),
        ("ghcr.io/phoenix-dev/phoenix-auth-debug:1", ["ghcr.io/phoenix-dev/phoenix-auth"], False),
        ("ghcr.io/phoenix-dev/phoenix-auth:1", ["ghcr.io/phoenix-dev/phoenix-auth:"], True),
        ("phoenix-auth:1", [PROJECT_IMAGE_PREFIX], False),  # Docker Hub shorthand is another image
        ("anything/at:all", ["*"], True),
        ("ghcr.io/phoenix-dev/x:1", [], False),
    ],
)
def test_prefixes_match_on_a_path_boundary(image, prefixes, allowed):
    assert image_allowed(image, prefixes) is allowed


def test_the_default_images_are_under_the_default_prefix():
    assert image_allowed(DEFAULT_AUTH_IMAGE, [PROJECT_IMAGE_PREFIX])
    assert image_allowed(DEFAULT_REDIS_IMAGE, [PROJECT_IMAGE_PREFIX])


@pytest.mark.parametrize("bad", ["", "ghcr.io/a b", " ghcr.io/a"])
def test_empty_or_spaced_prefixes_are_refused(bad):
    with pytest.raises(ValueError, match="allowed image prefix"):
        validate_prefixes([PROJECT_IMAGE_PREFIX, bad])
