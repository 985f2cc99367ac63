"""Checking the audit chain: every entry's HMAC, the links between entries and the head."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from jobs.models import GENESIS_HASH, AuditEntry, AuditHead


@dataclass(frozen=True)
class Verdict:
    checked: int
    problem: str = ""  # the first thing found wrong, naming the entry; "" when the chain holds
    entry_id: int | None = None  # the database id of the entry named, when there is one

    @property
    def ok(self) -> bool:
        return not self.problem


def _name(entry: AuditEntry) -> str:
    return (
        f"entry #{entry.seq} (id {entry.pk}, {entry.ts:%Y-%m-%d %H:%M:%S} "
        f"{entry.actor_name} {entry.action} {entry.target})"
    )


def verify() -> Verdict:
    """Walk the chain in order and stop at the first entry that was altered, inserted or
    removed. Reads in batches, so it runs in bounded memory on any size of trail."""
    prev_hash, expected, checked = GENESIS_HASH, 1, 0
    for entry in AuditEntry.objects.order_by("seq", "pk").iterator(chunk_size=2000):
        linked = entry.seq == expected and entry.prev_hash == prev_hash
        if not hmac.compare_digest(entry.compute_hash(), entry.hash):
            if linked:
                why = "was altered: its content no longer matches its hash"
            else:
                why = "was inserted: it is not part of the chain (its hash is not the chain's)"
            return Verdict(checked, f"{_name(entry)} {why}.", entry.pk)
        if entry.seq > expected:
            missing = (
                f"#{expected}" if entry.seq == expected + 1 else f"#{expected}-#{entry.seq - 1}"
            )
            return Verdict(
                checked,
                f"Entry {missing} was removed: {_name(entry)} follows #{expected - 1}.",
                entry.pk,
            )
        if not linked:
            return Verdict(
                checked,
                f"{_name(entry)} does not follow the entry before it: an entry before it was "
                "removed or replaced.",
                entry.pk,
            )
        prev_hash, expected, checked = entry.hash, entry.seq + 1, checked + 1
    head = AuditHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    if head_seq > expected - 1:
        missing = f"#{expected}" if head_seq == expected else f"#{expected}-#{head_seq}"
        return Verdict(checked, f"Entry {missing} was removed from the end of the trail.")
    if (head_seq, head_hash) != (expected - 1, prev_hash):
        return Verdict(
            checked,
            f"The chain head (#{head_seq}) does not match the last entry (#{expected - 1}): "
            "entries were added or the head was altered.",
        )
    return Verdict(checked)
