"""`python -m phoenix_auth.bench`: the benchmark runner (see runner.py)."""

from .runner import main

raise SystemExit(main())
