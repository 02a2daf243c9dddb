"""Summaries of py-spy's collapsed stacks: self time by leaf, inclusive time of project frames."""

from phoenix_bench.profile import summarize

_P = 'process 1:"python -m x";main (/a/uvicorn/main.py:1);handler (/a/phoenix_auth/app.py:10)'
COLLAPSED = (
    f"{_P};verify (/a/argon2/low_level.py:193) 80\n"
    f"{_P} 15\n"
    'process 2:"python -m x";idle (/a/selectors.py:5) 5\n'
)


def test_summarize_self_and_inclusive_shares():
    s = summarize(COLLAPSED)
    assert s["samples"] == 100
    assert s["self"][0] == ("verify (low_level.py:193)", 0.8)
    inclusive = dict(s["inclusive_project"])
    assert inclusive["handler (app.py:10)"] == 0.95
    assert inclusive["main (main.py:1)"] == 0.95
    assert not any(name.startswith("process") for name in inclusive)


def test_summarize_empty():
    assert summarize("") == {"samples": 0}
