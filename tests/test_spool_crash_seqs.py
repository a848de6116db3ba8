"""No seq is ever given to two readings, whatever crashes (gateway.outbox.handover).

Rows are handed to the publisher before their COMMIT (and, with `sync: full`, before
the fsync after it), so a reading can be at the broker and missing from the spool
after a crash. The restarted spool must not give its seq to a new reading: a consumer
that drops duplicates by seq would drop that reading. What must hold:
- the process killed (a real SIGKILL, in a child) between the hand-over and the
  COMMIT: the next start continues above the handed-over seqs, with no further gap;
- the machine restarted since (another boot id): above the seq lease;
- a clean close, or a crash with nothing handed over early: exactly where it stopped;
- the note cannot be written: nothing is handed over before its COMMIT.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.outbox import handover
from gateway.outbox.handover import HandoverNote, boot_id
from gateway.outbox.seqlease import SeqLease
from gateway.outbox.spool import Message, SqliteSpool
from tests.support import REPO
from tests.support import seqs_on_disk as on_disk
from tests.support import spool_rows as rows

BLOCK = 100




KILLED_AT_HAND_OVER = r"""
import os, signal, sys
from gateway.outbox.spool import NewRow, SqliteSpool

def rows(device, seqs):
    return [NewRow(device, f"p/{device}", s, b'{"seq":%d}' % s) for s in seqs]

spool = SqliteSpool(sys.argv[1], lease_block=int(sys.argv[2]))
spool.insert(rows("a", range(1, 4)) + rows("b", [1]))
if len(sys.argv) > 3:  # "delete-note": someone deletes the note while the spool runs
    spool.insert(rows("a", [4]), lambda msgs: None)
    os.unlink(sys.argv[1] + ".staged")
    assert spool.check_file() is None  # the spool file itself is fine

def staged(msgs):
    # The publisher has them (the broker may too): say so, then die before the COMMIT.
    print(",".join(f"{m.device}{m.seq}" for m in msgs), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

spool.insert(rows("a", range(spool.last_seqs()["a"] + 1, 7)), staged)
print("committed", flush=True)  # never reached
"""


def kill_at_hand_over(path: Path, *extra: str) -> str:
    out = subprocess.run([sys.executable, "-c", KILLED_AT_HAND_OVER, str(path), str(BLOCK),
                          *extra], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == -9, (out.returncode, out.stderr[-3000:])
    return out.stdout.strip()


def seqs_at_start(path: Path) -> dict[str, int]:
    """Where each device's seq continues when the spool at `path` is opened next."""
    spool = SqliteSpool(path, lease_block=BLOCK)
    try:
        return spool.last_seqs()
    finally:
        spool.close()


def test_a_process_killed_after_the_hand_over_continues_above_what_it_handed_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "s.db"
    assert kill_at_hand_over(path) == "a4,a5,a6"
    # Their COMMIT never ran: the rows are not in the spool...
    assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    caplog.set_level(logging.WARNING, "gateway.spool")
    again = SqliteSpool(path, lease_block=BLOCK)
    try:
        # ...but seqs 4..6 may be at the broker: the next reading of "a" is 7, not 4, and
        # no gap is made beyond them (the same boot: every COMMIT survived in the cache).
        assert again.last_seqs() == {"a": 6, "b": 1}
        assert "handed to the publisher before a crash" in caplog.text
        again.insert(rows("a", [7]))
    finally:
        again.close()
    assert on_disk(path)[-1] == ("a", 7)


def test_a_note_deleted_while_running_is_written_anew_before_the_next_hand_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """The note is deleted while the spool runs (a cleanup script, a user): the periodic
    file check sees it, and the next hand-over writes it at its path again, so the start
    after a SIGKILL still finds seqs 5 and 6. Written to the unlinked file instead, they
    were lost to the restart, which then gave 5 and 6 again."""
    path = tmp_path / "s.db"
    assert kill_at_hand_over(path, "delete-note") == "a5,a6"
    assert on_disk(path) == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("a", 4)]
    assert seqs_at_start(path) == {"a": 6, "b": 1}


def test_a_second_crash_before_the_device_reads_again_still_continues_above(
    tmp_path: Path,
) -> None:
    """The seqs a start raised are written at once: a run that dies before it commits a
    reading of that device (its note then names other devices only) loses nothing."""
    path = tmp_path / "s.db"
    kill_at_hand_over(path)
    second = SqliteSpool(path, lease_block=BLOCK)
    handed: list[Message] = []
    second.insert(rows("b", [2]), handed.extend)  # the note now holds b only
    assert [(m.device, m.seq) for m in handed] == [("b", 2)]
    del second  # dies too, in the same boot
    assert seqs_at_start(path) == {"a": 6, "b": 2}


def test_a_replaced_spool_that_crashes_at_once_still_continues_above_the_old_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    first = SqliteSpool(path, lease_block=BLOCK)
    first.insert(rows("a", range(1, 4)))
    first.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)  # lost while stopped
    fresh = SqliteSpool(path, lease_block=BLOCK)
    above = fresh.last_seqs()["a"]
    assert above >= 3 + BLOCK
    del fresh  # crashes before "a" reads again
    assert seqs_at_start(path)["a"] >= above


def test_after_a_restart_of_the_machine_seq_continues_above_the_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "s.db"
    kill_at_hand_over(path)
    lease = SeqLease(Path(f"{path}.seq"))
    lease.load()
    # A power cut: commits after the last fsync may be gone as well, so the note (not
    # synced) proves nothing. The lease covers every seq ever handed over.
    monkeypatch.setattr("gateway.outbox.spool.boot_id", lambda: "another-boot")
    caplog.set_level(logging.WARNING, "gateway.spool")
    again = SqliteSpool(path, lease_block=BLOCK)
    try:
        assert again.last_seqs() == lease.ceilings
        assert again.last_seqs()["a"] > 6
        assert "the machine has started again since" in caplog.text
    finally:
        again.close()


@pytest.mark.parametrize("crash", [False, True])
def test_without_an_early_hand_over_seq_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: bool,
) -> None:
    """A clean close, even before a reboot: no gap. A crash of the process after plain
    commits: no gap either (they are in the file)."""
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, lease_block=BLOCK)
    spool.insert(rows("a", range(1, 6)))
    if crash:
        del spool  # no close: the marks stay
    else:
        spool.close()
        monkeypatch.setattr("gateway.outbox.spool.boot_id", lambda: "another-boot")
    assert seqs_at_start(path) == {"a": 5}


@pytest.mark.parametrize("acks", [[1, 3], [3], [2, 3]])
def test_acks_out_of_order_keep_the_latest_seq_across_a_crash(
    tmp_path: Path, acks: list[int],
) -> None:
    """PUBACKs need not come in order (a resend after a reconnect, another broker). When
    the row with a device's latest seq is deleted and an older one stays, a start after
    a crash took seq from the rows left and gave the acked seq again (3 here): a
    consumer dropping duplicates by seq then drops the new reading. Found by the spool's
    property test once it acked scattered ids."""
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, lease_block=BLOCK)
    stored = spool.insert(rows("a", range(1, 4))).stored
    for seq in acks:  # one ack per transaction, as PUBACKs come
        spool.delete([m.id for m in stored if m.seq == seq])
    del spool  # a crash: no close, so nothing is written down at the end
    assert seqs_at_start(path) == {"a": 3}


def test_a_clean_close_after_a_failed_early_commit_keeps_its_seqs_above(tmp_path: Path) -> None:
    """Rows handed over whose COMMIT then failed (a full disk) and were never stored
    before the stop: the seqs recorded at close are above them."""
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, lease_block=BLOCK)
    spool.insert(rows("a", range(1, 3)))
    assert spool.handover.note(spool.spool_id, {"a": 4})  # as _hand_over does
    spool.close()
    assert seqs_at_start(path) == {"a": 4}


def test_rows_wait_for_their_commit_while_the_note_cannot_be_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "s.db"
    Path(f"{path}.staged").mkdir()  # os.open(O_WRONLY) fails: EISDIR
    caplog.set_level(logging.WARNING, "gateway.spool")
    spool = SqliteSpool(path, lease_block=BLOCK)
    handed: list[Message] = []
    try:
        result = spool.insert(rows("a", range(1, 4)), handed.extend)
        assert handed == []  # the outbox hands result.stored over after the COMMIT
        assert [m.seq for m in result.stored] == [1, 2, 3]
        spool.insert(rows("a", [4]), handed.extend)
        assert caplog.text.count("readings are handed to the publisher after their COMMIT") == 1
        Path(f"{path}.staged").rmdir()
        spool.insert(rows("a", [5]), handed.extend)
        assert [m.seq for m in handed] == [5]
    finally:
        spool.close()


def test_a_torn_or_foreign_note_is_ignored(tmp_path: Path) -> None:
    note = tmp_path / "n"
    for text in (b"", b'{"spool_id":"x","seqs":', b"[1,2]\n", b'{"spool_id":"y","seqs":{"a":9}}\n'):
        note.write_bytes(text)
        assert HandoverNote(note).load("x") == {}
    note.write_bytes(b'{"spool_id":"x","seqs":{"a":9}}\n' + b"older, longer bytes")
    assert HandoverNote(note).load("x") == {"a": 9}


def test_the_note_only_grows_and_a_shorter_line_leaves_no_trace(tmp_path: Path) -> None:
    path = tmp_path / "n"
    note = HandoverNote(path)
    assert note.note("x", {"long-device-name": 12345, "b": 2})
    other = HandoverNote(path)
    other.seqs = {}
    assert other.note("x", {"a": 1})  # a new run writes a shorter line over the old one
    assert HandoverNote(path).load("x") == {"a": 1}
    assert note.note("x", {"b": 1})  # below what it noted: kept at 2
    assert note.seqs == {"long-device-name": 12345, "b": 2}
    note.close()
    other.close()


def test_boot_id_is_the_kernels_and_empty_without_one(tmp_path: Path) -> None:
    # proc_sys_kernel(5): a UUID in the canonical 8-4-4-4-12 hex form, new at each boot.
    if handover.BOOT_ID_PATH.exists():
        got = boot_id()
        assert len(got) == 36 and got.count("-") == 4, got
        assert got == boot_id()
    assert boot_id(tmp_path / "missing") == ""


@settings(max_examples=300, deadline=None)
@example(data=b'{"spool_id":"x","seqs":{"a":Infinity}}\n')  # int(inf): OverflowError
@example(data=b'{"spool_id":"x","seqs":{"a":NaN}}\n')
@given(data=st.one_of(
    st.binary(max_size=200),
    # Near misses of the real format: JSON of any shape under the right keys.
    st.builds(lambda sid, seqs, tail: json.dumps({"spool_id": sid, "seqs": seqs}).encode()
              + tail,
              st.sampled_from(["x", "y", 1, None]),
              st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda c: st.lists(c) | st.dictionaries(st.text(), c), max_leaves=6),
              st.binary(max_size=20)),
))
def test_any_bytes_in_the_note_load_as_seqs_or_nothing(data: bytes) -> None:
    """A note torn by a power cut, or bytes of any other origin, never stop a start:
    load() gives int seqs of this spool, or {} (the lease still bounds every seq)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "n"
        path.write_bytes(data)
        got = HandoverNote(path).load("x")
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in got.items())
    if got:
        assert json.loads(data.split(b"\n", 1)[0])["spool_id"] == "x"
