"""Errors the benchmark raises, as types, so the runner can print one clear line and exit non-zero."""

from __future__ import annotations


class BenchError(Exception):
    """Base class: the benchmark cannot go on; the message says why and what to do."""


class ServerStartError(BenchError):
    """A server under test did not become ready in time (its log tail is in the message)."""


class SetupError(BenchError):
    """Preparing the database (migrate, seed, naive table copy) failed."""


class LoadError(BenchError):
    """The load generator could not reach the server or got only errors."""
