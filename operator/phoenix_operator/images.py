"""Which container images a PhoenixAuth may run: the operator's image allow-list.

Whoever may create a PhoenixAuth chooses the image of pods that receive the database URL (and
every Secret the spec names) as env: without a limit on images, "may create PhoenixAuth" is
"may read those Secrets with code of my choosing". The operator therefore runs only images under
the prefixes it was given (`--allowed-image-prefix`, chart value `operator.allowedImagePrefixes`);
by default the repository path this project publishes to. `*` allows every image.

A prefix matches on a path boundary, so `ghcr.io/phoenix-dev` allows
`ghcr.io/phoenix-dev/phoenix-auth:0.1.0` but not `ghcr.io/phoenix-dev-evil/x`; a prefix ending in
`/`, `:` or `@` is matched as written. The comparison is on the reference as written in the spec:
`phoenix-auth:1` (Docker Hub shorthand) is not `docker.io/library/phoenix-auth:1` here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from phoenix_operator.errors import ImageNotAllowed

if TYPE_CHECKING:
    from phoenix_operator.spec import PhoenixAuthSpec

# The repository path this project's images are published under (the CRD's default images).
PROJECT_IMAGE_PREFIX = "ghcr.io/phoenix-dev/"
ANY_IMAGE = "*"
_BOUNDARIES = ("/", ":", "@")


def validate_prefixes(prefixes: Iterable[str]) -> list[str]:
    """The prefixes, checked: non-empty, no whitespace (ValueError names the bad one)."""
    out: list[str] = []
    for prefix in prefixes:
        if not prefix or any(ch.isspace() for ch in prefix):
            raise ValueError(f"allowed image prefix {prefix!r} must be non-empty and without spaces")
        out.append(prefix)
    return out


def image_allowed(image: str, prefixes: Sequence[str]) -> bool:
    for prefix in prefixes:
        if prefix == ANY_IMAGE:
            return True
        if prefix.endswith(_BOUNDARIES):
            if image.startswith(prefix):
                return True
        elif image == prefix or any(image.startswith(prefix + b) for b in _BOUNDARIES):
            return True
    return False


def images_of(spec: PhoenixAuthSpec) -> list[tuple[str, str]]:
    """(field path, image) of every container image the spec makes the operator run."""
    out = [("spec.authService.image", spec.auth_service.image)]
    if spec.redis.mode == "managed":
        out.append(("spec.redis.managed.image", spec.redis.managed_or_default.image))
    return out


def check_images(spec: PhoenixAuthSpec, prefixes: Sequence[str]) -> None:
    """Raise ImageNotAllowed naming the first image outside the allow-list (nothing is deployed)."""
    for field, image in images_of(spec):
        if not image_allowed(image, prefixes):
            allowed = ", ".join(prefixes) or "(none)"
            raise ImageNotAllowed(
                field=field,
                message=(
                    f"{field} {image!r} is not an image this operator may run (allowed prefixes: "
                    f"{allowed}): use an image under one of them, or have the operator's "
                    "administrator add its prefix (chart value operator.allowedImagePrefixes)"
                ),
            )
