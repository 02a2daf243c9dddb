"""The login grid's flood report: an admitted login's time split into its parts (Server-Timing)."""

from phoenix_bench.login_grid import admitted_parts, flood_table


def test_admitted_parts_split_wait_hash_and_rest():
    parts = admitted_parts(
        [
            "db;dur=9.8, verify;dur=49.8, hash;dur=30.0, throttle;dur=3.1, total;dur=61.4",
            "verify;dur=20.0, hash;dur=20.0, total;dur=22.0",
            None,  # no header: not counted
            "total;dur=5.0",  # a login answered without a verify: not counted
        ]
    )
    assert [round(v, 1) for v in parts["wait"]] == [19.8, 0.0]
    assert parts["hash"] == [30.0, 20.0]
    assert [round(v, 1) for v in parts["rest"]] == [11.6, 2.0]


def test_flood_table_shows_the_parts_in_verifies_and_the_clients_cpu():
    flood = {
        "workers": 2,
        "offered_per_s": 230.0,
        "ok_per_s": 52.0,
        "shed_share": 0.77,
        "ok_p99_ms": 126.0,
        "ok_server_p99_ms": 124.0,
        "shed_p99_ms": 71.0,
        "shed_max_ms": 94.8,
        "other_errors": 0.0,
        "server_cpu_s": 12.0,
        "admitted": 312.0,
        "shed": 1050.0,
        "client_cores": 0.41,
        "wait_p99_ms": 52.0,
        "hash_p99_ms": 65.0,
        "rest_p99_ms": 13.0,
    }
    cell = {"workers": 2, "connections": 8, "server_cpu_ms_per_login": 31.0}
    text = flood_table({"verify_ms": 26.0, "floods": [flood], "cells": [cell]})
    row = text.splitlines()[-1]
    assert "| 2.0 / 2.5 / 0.5 |" in row and "| 0.41 |" in row and "124 (4.8)" in row
