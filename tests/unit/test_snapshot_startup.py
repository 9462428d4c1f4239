"""At start: a store holding an interrupted snapshot restore is emptied again (a follower
then takes a new snapshot; a leader does not start), and --replication-log-batches sets how
many batches a leader keeps for its followers."""

from __future__ import annotations

import logging

import pytest

from atp import limits
from atp.bootstrap import discard_interrupted_restore
from atp.daemon import config_from, parse_args
from atp.store import MemoryStore, StoreError, WriteBatch


def interrupted() -> MemoryStore:
    store = MemoryStore()
    store.commit(WriteBatch(records={("nodes", b"old"): b"v"}, journal=[(1, b"e")]))
    store.begin_restore()
    store.restore([("nodes", b"part-of-a-snapshot", b"v")])
    return store


def test_a_follower_starts_from_an_emptied_store_still_marked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = interrupted()
    with caplog.at_level(logging.WARNING):
        discard_interrupted_restore(store, following=True)
    assert store.restore_incomplete()  # so that its follower takes a snapshot first
    assert store.load()["nodes"] == {} and store.last_sequence() == 0
    assert "interrupted" in caplog.text


def test_a_leader_does_not_start_from_an_interrupted_restore() -> None:
    store = interrupted()
    with pytest.raises(StoreError, match="--follow"):
        discard_interrupted_restore(store, following=False)


def test_a_complete_store_is_left_alone() -> None:
    store = MemoryStore()
    store.commit(WriteBatch(records={("nodes", b"kept"): b"v"}))
    discard_interrupted_restore(store, following=False)
    assert store.load()["nodes"] == {b"kept": b"v"}


def test_replication_log_batches_defaults_to_the_limit_and_reads_its_variable() -> None:
    assert config_from(parse_args([], {})).replication_log_batches == (
        limits.replication_log_batches_max)
    assert config_from(parse_args(["--replication-log-batches", "5"], {})
                       ).replication_log_batches == 5
    assert parse_args([], {"ATP_REPLICATION_LOG_BATCHES": "7"}).replication_log_batches == 7


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_replication_log_batches_refuses_less_than_one(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--replication-log-batches", value], {})
    assert exited.value.code == 2
    assert "--replication-log-batches" in capsys.readouterr().err
