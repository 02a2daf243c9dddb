"""The wrk driver's pure parts: the Lua request mix and parsing wrk's report."""

import pytest

from phoenix_bench.errors import LoadError
from phoenix_bench.wrk import WrkRequest, lua_script, lua_string, parse_output

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  10.00ms   80.00%
    Req/Sec     8.00k   500.00     9.00k    70.00%
  Latency Distribution
     50%  850.00us
     75%    1.40ms
     90%    1.80ms
     99%    1.20s
  40000 requests in 5.00s, 5.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:   8000.00
Transfer/sec:      1.00MB
"""


def test_parse_output_reads_rate_errors_and_latency_units():
    r = parse_output(WRK_OUTPUT)
    assert r.requests == 40000 and r.seconds == 5.0
    assert r.requests_per_s == 8000.0
    assert r.non_2xx == 12 and r.socket_errors == 3
    assert r.latency_ms == {"50": 0.85, "75": 1.4, "90": 1.8, "99": 1200.0}
    assert r.ok_per_s == pytest.approx((40000 - 15) / 5.0)


def test_parse_output_rejects_non_wrk_text():
    with pytest.raises(LoadError):
        parse_output("wrk: command not found")


def test_lua_string_escapes_quotes_backslashes_and_non_ascii():
    assert lua_string('{"a":"b\\c"}') == '"{\\"a\\":\\"b\\\\c\\"}"'
    assert lua_string("é\n") == '"\\195\\169\\n"'


def test_lua_script_cycles_the_given_sequence_one_based():
    script = lua_script(
        [WrkRequest("GET", "/a", (("Authorization", "Bearer x"),)), WrkRequest("POST", "/b", (), '{"k":1}')],
        [1, 0, 1],
    )
    assert "local seq = {2,1,2}" in script
    assert '["Authorization"] = "Bearer x"' in script
    assert '"{\\"k\\":1}"' in script
    assert "function request()" in script
    with pytest.raises(ValueError):
        lua_script([WrkRequest("GET", "/")], [1])
