"""The reconcile of one PhoenixAuth, split into named steps (see `reconciler` for the order)."""

from phoenix_operator.reconcile.reconciler import Outcome, Reconciler
from phoenix_operator.reconcile.run import ObjectState, version

__all__ = ["ObjectState", "Outcome", "Reconciler", "version"]
