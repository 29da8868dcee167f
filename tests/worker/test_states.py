"""Tier 1: the state machine table."""

from __future__ import annotations

import itertools

import pytest

from worker.states import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    IllegalTransition,
    JobState,
    check_transition,
    sources_for,
)


def test_terminal_states_have_no_way_out():
    for state in TERMINAL_STATES:
        assert ALLOWED_TRANSITIONS[state] == frozenset()


def test_every_active_state_can_end():
    for state, targets in ALLOWED_TRANSITIONS.items():
        if state not in TERMINAL_STATES:
            assert targets & TERMINAL_STATES, state


def test_happy_path_is_allowed():
    path = ["queued", "acquiring", "starting", "recording", "stopping", "completed"]
    for a, b in itertools.pairwise(path):
        check_transition(frozenset({JobState(a)}), JobState(b))


def test_shortcuts_are_refused():
    with pytest.raises(IllegalTransition):
        check_transition(frozenset({JobState.QUEUED}), JobState.RECORDING)
    with pytest.raises(IllegalTransition):
        check_transition(frozenset({JobState.RECORDING}), JobState.COMPLETED)


def test_sources_for():
    assert sources_for(JobState.EMPTY) == {JobState.STOPPING}
