"""Step `keys`: PHOENIX_ADMIN_TOKEN and PHOENIX_CACHE_SIGNING_KEY for the auth pods.

The user's own Secrets (spec.authService.adminTokenSecretRef / cacheSigningKeySecretRef) are
checked (present, long enough); the others are generated once into `<name>-phoenix-keys`. The
generated Secret is read before every apply and each value it holds is kept: only a key it lacks
(first reconcile, or a key the user deleted from it) is generated, so nothing rotates silently.
"""

from __future__ import annotations

from phoenix_operator.builders.keys import (
    KEY_ENV,
    MIN_KEY_BYTES,
    SPEC_FIELD,
    build_keys_secret,
    generated_env,
    new_key,
    user_refs,
)
from phoenix_operator.errors import TransientError
from phoenix_operator.reconcile.run import Run, digest, secret_value
from phoenix_operator.spec import SecretUse

# Reason when a user's Secret holds a value the auth service would refuse to start with.
SHORT_KEY_REASON = {
    "spec.authService.adminTokenSecretRef": "AdminTokenTooShort",
    "spec.authService.cacheSigningKeySecretRef": "CacheSigningKeyTooShort",
}


async def converge_keys(run: Run) -> list[tuple[str, str, str]]:
    """Returns (env, Secret, digest) per key for the config hash; values go nowhere else."""
    ns, spec = run.ns, run.spec
    out: list[tuple[str, str, str]] = []
    for env, ref in user_refs(spec).items():
        use = SecretUse(SPEC_FIELD[env], ref, True)
        value = await run.require_secret(use)
        if len(value.encode()) < MIN_KEY_BYTES:
            raise TransientError(
                f"Secret {ns}/{ref.name} key {ref.key} ({use.field}) holds {len(value.encode())} bytes; "
                f"{env} needs at least {MIN_KEY_BYTES} (the auth service refuses to start with less): "
                "put a longer random value there, e.g. `openssl rand -base64 48`",
                reason=SHORT_KEY_REASON[use.field],
                delay=30.0,
            )
        out.append((env, ref.name, digest(value)))
    wanted = generated_env(spec)
    if wanted:
        name = run.owner.keys_secret_name
        existing = await run.read("v1", "Secret", name)
        # Keep every value already there (also a key no longer generated: switching back to a
        # generated key must not rotate it). A Secret we do not own is refused by the apply.
        values = {k: v for k in KEY_ENV if (v := secret_value(existing, k))}
        for env in wanted:
            values.setdefault(env, new_key())
        advice = (
            "rename or delete it, or name your own Secrets in spec.authService.adminTokenSecretRef / "
            "cacheSigningKeySecretRef"
        )
        await run.apply(build_keys_secret(run.owner, values), existing, advice=advice)
        out += [(env, name, digest(values[env])) for env in wanted]
    return sorted(out)
