"""The test tree has no `__init__.py` files, so pytest imports each test module by its basename:
two modules with one basename in different folders stop collection on a fresh clone (the stale
`__pycache__` of a working copy hides it)."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_module_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)
    assert [n for n, c in names.items() if c > 1 and n != "conftest.py"] == []
