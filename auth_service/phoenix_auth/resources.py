"""What one process of the service holds while it runs, as one typed object.

The lifespan (app.py) opens each resource and builds `Resources`; every request reaches it through
its app (`PhoenixApp.resources`, shared by the admin app), never through an untyped state bag, so
a handler that names a resource the process does not hold fails the type check, not a request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cache import AuthCache
    from .db import Database
    from .drain import Drain
    from .invalidation import InvalidationListener
    from .login import LoginService
    from .metrics import Metrics
    from .passwords import PasswordHasher
    from .redislink import RedisLink
    from .sessions import Sessions
    from .settings import Settings
    from .throttle import Throttle


@dataclass(frozen=True, slots=True)
class Resources:
    """The process's settings, metrics and drain mark plus what the lifespan opened."""

    settings: Settings
    metrics: Metrics
    drain: Drain
    db: Database
    redis: RedisLink
    cache: AuthCache
    hasher: PasswordHasher
    throttle: Throttle
    sessions: Sessions
    listener: InvalidationListener
    login: LoginService
