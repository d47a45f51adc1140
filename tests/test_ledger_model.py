"""The ledger protocol against a reference model: a hypothesis state machine.

Workers claim, renew, complete, fail and release contents while an injected
clock moves on; after every step each row in the ledger must equal the
model's. The model is the protocol of DESIGN.md section 3 written as plainly
as possible; the reads by key (`due`, `find`, `by_path`, `tables`) must
agree with it at every step. On both ledgers (SQLite, Azure Table on Azurite).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ingest_core.config import StorageConfig
from ingest_core.errors import LeaseLostError
from ingest_core.ledger import FAILED, PROCESSING, QUARANTINED, SUCCEEDED, BaseLedger, FileRecord

LEASE = 10
MAX_ATTEMPTS = 3
OWNERS = ("A", "B", "C")
CONTENTS = tuple(hashlib.sha256(k.encode()).hexdigest() for k in ("x", "y"))


class Clock:
    """The ledger's injected clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Row:
    """The model's row: only what the protocol decides."""

    status: str
    owner: str | None
    lease_until: datetime | None
    attempt: int
    delta_version: int | None = None
    rows: int | None = None
    error: str | None = None


def machine_for(ledger: BaseLedger, clock: Clock) -> type[RuleBasedStateMachine]:
    """A state machine class driving `ledger` (one fresh target table per example)."""

    class LedgerModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.table = f"/lake/{uuid.uuid4().hex}"
            clock.now = datetime(2026, 1, 1, tzinfo=UTC)
            self.model: dict[str, Row] = {}
            self.held: dict[tuple[str, str], FileRecord] = {}
            self.done_by: dict[str, list[str]] = {}

        def live(self, row: Row) -> bool:
            return row.status == PROCESSING and row.lease_until is not None and (
                row.lease_until > clock.now
            )

        @rule(owner=st.sampled_from(OWNERS), sha=st.sampled_from(CONTENTS))
        def claim(self, owner: str, sha: str) -> None:
            row = self.model.get(sha)
            lease = clock.now + timedelta(seconds=LEASE)
            if row is None:
                expected = "claimed"
                self.model[sha] = Row(PROCESSING, owner, lease, 1)
            elif row.status == PROCESSING and row.owner == owner:
                expected = "claimed"
            elif row.status == SUCCEEDED:
                expected = "done"
            elif row.status == QUARANTINED:
                expected = "quarantined"
            elif self.live(row):
                expected = "in_progress"
            elif row.attempt >= MAX_ATTEMPTS and not (
                row.status == PROCESSING and row.attempt == MAX_ATTEMPTS  # the last look
            ):
                expected = "quarantined"
                row.status, row.owner, row.lease_until = QUARANTINED, None, None
                row.error = f"gave up after {row.attempt} attempts; last error: {row.error}"
            else:
                expected = "claimed"
                row.status, row.owner, row.lease_until = PROCESSING, owner, lease
                row.attempt += 1
            result = ledger.claim(self.table, sha, path=f"landing/{sha[:6]}", owner=owner,
                                  lease_seconds=LEASE, max_attempts=MAX_ATTEMPTS)
            assert result.outcome == expected, (result.outcome, expected, row)
            if expected == "claimed":
                self.held[(owner, sha)] = result.record

        @precondition(lambda self: self.held)
        @rule(data=st.data())
        def renew(self, data: st.DataObject) -> None:
            owner, sha = data.draw(st.sampled_from(sorted(self.held)))
            row = self.model[sha]
            if row.status == PROCESSING and row.owner == owner:
                self.held[(owner, sha)] = ledger.renew(self.held[(owner, sha)], LEASE)
                row.lease_until = clock.now + timedelta(seconds=LEASE)
            else:
                with pytest.raises(LeaseLostError):
                    ledger.renew(self.held[(owner, sha)], LEASE)
                del self.held[(owner, sha)]

        @precondition(lambda self: self.held)
        @rule(data=st.data(), version=st.integers(0, 2**40))
        def complete(self, data: st.DataObject, version: int) -> None:
            owner, sha = data.draw(st.sampled_from(sorted(self.held)))
            record = self.held.pop((owner, sha))
            row = self.model[sha]
            ledger.complete(record, delta_version=version, rows=7)
            if row.status == PROCESSING and row.owner == owner:
                row.status, row.owner, row.lease_until = SUCCEEDED, None, None
                row.delta_version, row.rows, row.error = version, 7, None
                self.done_by.setdefault(sha, []).append(owner)

        @precondition(lambda self: self.held)
        @rule(data=st.data(), quarantine=st.booleans())
        def fail(self, data: st.DataObject, quarantine: bool) -> None:
            owner, sha = data.draw(st.sampled_from(sorted(self.held)))
            record = self.held.pop((owner, sha))
            row = self.model[sha]
            ledger.fail(record, f"boom from {owner}", quarantine=quarantine)
            if row.status == PROCESSING and row.owner == owner:
                row.status = QUARANTINED if quarantine else FAILED
                row.owner, row.lease_until, row.error = None, None, f"boom from {owner}"

        @rule(sha=st.sampled_from(CONTENTS))
        def release(self, sha: str) -> None:
            ledger.release(self.table, sha)
            row = self.model.get(sha)
            if row is not None and row.status == QUARANTINED:
                row.status, row.attempt = FAILED, 0

        @rule(seconds=st.sampled_from([1, LEASE - 1, LEASE, LEASE + 1, 3 * LEASE]))
        def advance(self, seconds: int) -> None:
            clock.now += timedelta(seconds=seconds)

        @invariant()
        def ledger_matches_the_model(self) -> None:
            for sha in CONTENTS:
                got = ledger.get(self.table, sha)
                want = self.model.get(sha)
                if want is None:
                    assert got is None
                    continue
                assert got is not None
                assert (got.status, got.owner, got.lease_until, got.attempt) == (
                    want.status, want.owner, want.lease_until, want.attempt
                )
                assert (got.delta_version, got.rows, got.error) == (
                    want.delta_version, want.rows, want.error
                )

        @invariant()
        def reads_by_key_agree_with_the_model(self) -> None:
            want_due = {
                sha for sha, row in self.model.items()
                if (row.status == FAILED and row.attempt < MAX_ATTEMPTS)
                or (row.status == PROCESSING and not self.live(row))
            }
            assert {r.sha256 for r in ledger.due(self.table, max_attempts=MAX_ATTEMPTS)} == (
                want_due
            )
            for sha in self.model:
                assert [r.sha256 for r in ledger.find(sha, table=self.table)] == [sha]
                assert sha in {r.sha256 for r in ledger.by_path(self.table, f"landing/{sha[:6]}")}
            assert self.table in ledger.tables() or not self.model

        @invariant()
        def content_is_completed_once_and_stays_done(self) -> None:
            for sha, owners in self.done_by.items():
                assert len(owners) == 1, f"{sha[:6]} completed by {owners}"
                assert self.model[sha].status == SUCCEEDED

    return LedgerModel


@pytest.fixture(params=["sqlite", pytest.param("azure_table", marks=pytest.mark.azurite)])
def ledger_and_clock(request: pytest.FixtureRequest, tmp_path: Path):
    clock = Clock()
    if request.param == "sqlite":
        from ingest_core.ledger.sqlite import SqliteLedger

        ledger: BaseLedger = SqliteLedger(tmp_path / "ledger.sqlite", clock=clock)
        examples = 150
    else:
        from ingest_core.ledger.azure_table import AzureTableLedger

        connection = request.getfixturevalue("azurite")
        name = request.getfixturevalue("unique_name")
        ledger = AzureTableLedger.from_uri(
            f"azure-table://{name}", StorageConfig(connection_string=connection), clock=clock
        )
        examples = 40
    yield ledger, clock, examples
    ledger.close()


def test_ledger_follows_the_protocol_model_under_any_interleaving(ledger_and_clock):
    ledger, clock, examples = ledger_and_clock
    run_state_machine_as_test(
        machine_for(ledger, clock),
        settings=settings(
            max_examples=examples, stateful_step_count=30, deadline=None,
            suppress_health_check=[HealthCheck.too_slow], database=None,
        ),
    )
