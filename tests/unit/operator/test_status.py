"""Conditions keep lastTransitionTime unless their status changes."""

from __future__ import annotations

from phoenix_operator.status import READY, REDIS_READY, Condition, get_condition, set_conditions


def test_new_condition_gets_a_transition_time():
    conds, transitions = set_conditions(
        [], [Condition(READY, False, "Progressing", "0/2")], now="T1", generation=3
    )
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Progressing",
            "message": "0/2",
            "observedGeneration": 3,
            "lastTransitionTime": "T1",
        }
    ]
    assert [(t.type, t.old, t.new) for t in transitions] == [("Ready", None, "False")]


def test_same_status_keeps_time_but_updates_reason_and_message():
    first, _ = set_conditions([], [Condition(READY, False, "Progressing", "0/2")], now="T1")
    second, transitions = set_conditions(first, [Condition(READY, False, "Progressing", "1/2")], now="T2")
    assert get_condition(second, READY)["lastTransitionTime"] == "T1"
    assert get_condition(second, READY)["message"] == "1/2"
    assert transitions == []


def test_status_flip_moves_time_and_reports_transition():
    first, _ = set_conditions([], [Condition(READY, False, "Progressing", "")], now="T1")
    second, transitions = set_conditions(first, [Condition(READY, True, "AllComponentsReady", "")], now="T2")
    assert get_condition(second, READY)["lastTransitionTime"] == "T2"
    assert [(t.old, t.new) for t in transitions] == [("False", "True")]


def test_untouched_conditions_are_kept_and_order_is_stable():
    first, _ = set_conditions([], [Condition(REDIS_READY, True, "RedisAvailable", "")], now="T1")
    second, _ = set_conditions(first, [Condition(READY, None, "Unknown", "")], now="T2")
    assert [c["type"] for c in second] == ["Ready", "RedisReady"]
    assert get_condition(second, READY)["status"] == "Unknown"
    assert get_condition(second, REDIS_READY)["lastTransitionTime"] == "T1"
