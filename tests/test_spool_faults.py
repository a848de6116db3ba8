"""The spool at the edge of the disk, on real files: a database that cannot grow
(SQLite's max_page_count), a file size limit (RLIMIT_FSIZE in a child process), a real
small file system filled up (a tmpfs in a child's own mount namespace), an unwritable
file or directory, the file deleted or replaced while in use, a lost spool."""

from __future__ import annotations

import ctypes
import logging
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.outbox import Outbox
from gateway.outbox.faults import classify
from gateway.outbox.seqlease import SeqLease
from gateway.outbox.spool import NewRow, SqliteSpool
from gateway.reading import Reading
from tests.support import REPO, Mosquitto, Subscriber, wait_until

JOIN = 30.0


def on_disk(path: Path) -> tuple[int, int]:
    """(rows, bytes) as a separate connection reads them from the file."""
    db = sqlite3.connect(path)
    try:
        n, nbytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic) + LENGTH(device)), 0)"
            " FROM messages").fetchone()
    finally:
        db.close()
    from gateway.outbox.spool import ROW_OVERHEAD

    return int(n), int(nbytes) + ROW_OVERHEAD * int(n)


def newest_id(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()[0])
    finally:
        db.close()


def oldest_id(path: Path) -> float:
    """The oldest row's id; infinity once the table is empty."""
    db = sqlite3.connect(path)
    try:
        row = db.execute("SELECT MIN(id) FROM messages").fetchone()[0]
    finally:
        db.close()
    return float("inf") if row is None else float(row)


def seqs_on_disk(path: Path, device: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [s for (s,) in db.execute(
            "SELECT seq FROM messages WHERE device = ? ORDER BY id", (device,))]
    finally:
        db.close()


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> dict[str, int | None]:
    """What the spool's file system reports free (None: the truth). 0 is a full disk;
    the spool then lets its file grow by no page, as it does on a disk that is full."""
    import gateway.outbox.spool as spool_module
    from gateway.outbox import faults

    free: dict[str, int | None] = {"bytes": None}
    real = faults.free_bytes

    def fake(directory: Path) -> int | None:
        return real(directory) if free["bytes"] is None else free["bytes"]

    monkeypatch.setattr(spool_module, "free_bytes", fake)
    return free


def put_all(box: Outbox, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert box.put(Reading("d", {"v": i, "pad": "x" * 200}))


# -- a database that cannot grow: acks still free space, nothing is lost ------------------


def test_full_disk_acks_free_space_and_nothing_accepted_or_waiting_is_lost(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, disk: dict[str, int | None]) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    box = Outbox(spool, "gw", commit_interval=0.005, queue_size=100_000, put_timeout=30.0)
    changes: list[str] = []
    box.on_state_change(lambda: changes.append(box.spool_state))
    box.start()
    try:
        put_all(box, 300)
        assert box.flush(JOIN)
        delivered = box.take(1000)
        assert len(delivered) == 300
        # The disk is full: the database may not grow by a single page from now on
        # (SQLite's max_page_count), so inserts fail with SQLITE_FULL once the free
        # pages inside the file are used up.
        disk["bytes"] = 0
        with caplog.at_level(logging.WARNING, logger="gateway"):
            put_all(box, 2000, start=300)
            assert wait_until(lambda: box.spool_state == "full", JOIN), box.spool_error
            assert "disk full: 0 KiB free" in (box.spool_error or "")
            # The counters say what the file holds, after every failed commit (the spooler
            # keeps trying, and a row that fits a page's last free bytes may still go in:
            # compared when no commit is between its write and its count).
            assert wait_until(lambda: (box.spool.count(), box.spool.size_bytes())
                              == on_disk(path), JOIN)
            # Waiting, not gone: every reading put is on disk or in memory.
            assert wait_until(lambda: box.depth() == 2300 - box.stats.delivered, JOIN)
            # The broker is back and acknowledges what it gets: acks are deleted in a
            # transaction of their own, which frees pages inside the file for the
            # readings waiting in memory, which go in as room appears.
            box.ack(m.id for m in delivered)
            seen = [m.seq for m in delivered]

            def publisher_round() -> bool:
                got = box.take(200)
                seen.extend(m.seq for m in got)
                box.ack(m.id for m in got)
                return box.spool_state == "ok" and len(seen) == 2300

            # Generous: on a loaded 2-core machine (two full suites side by side) the
            # rounds of delete, retry and insert once took over a minute.
            assert wait_until(publisher_round, JOIN * 4), (
                box.spool_state, box.depth(), box.stats.accepted, len(seen),
                len(set(seen)))
            assert box.flush(JOIN)
        text = caplog.text
        assert "cannot rollback" not in text
        assert text.count("disk full: 0 KiB free") == 1  # once per change of state
        assert "writable again" in text
        assert changes[:2] == ["full", "ok"]
        assert wait_until(lambda: (box.spool.count(), box.spool.size_bytes())
                          == on_disk(path), JOIN)
        # Nothing waiting was dropped or reordered, and no seq was skipped.
        assert seen == list(range(1, 2301))
        assert box.stats.overflowed == 0 and box.stats.lost_at_stop == 0
        box.put(Reading("d", {"v": -1}))
        assert box.flush(JOIN)
    finally:
        box.stop()
    again = SqliteSpool(path)  # after a restart the counts are the file's again
    try:
        assert (again.count(), again.size_bytes()) == on_disk(path)
        assert again.count() >= 1 and again.last_seqs() == {"d": 2301}
    finally:
        again.close()


def test_stop_returns_in_time_while_the_spool_refuses_writes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, disk: dict[str, int | None]) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    box = Outbox(spool, "gw", commit_interval=0.005, queue_size=100_000, put_timeout=30.0)
    box.start()
    put_all(box, 50)
    assert box.flush(JOIN)
    disk["bytes"] = 0
    put_all(box, 3000, start=50)
    assert wait_until(lambda: box.spool_state == "full", JOIN)
    with caplog.at_level(logging.ERROR, logger="gateway.outbox"):
        box.stop(timeout=1.0)
    assert not box.alive
    # Never accepted (no seq), so nothing accepted is lost; but counted and said.
    assert box.stats.lost_at_stop == 3050 - box.stats.accepted > 0
    assert f"{box.stats.lost_at_stop} readings that were never accepted" in caplog.text
    assert seqs_on_disk(path, "d") == list(range(1, box.stats.accepted + 1))


def test_a_failed_commit_is_classified_not_hidden(
        tmp_path: Path, disk: dict[str, int | None]) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path)
    try:
        disk["bytes"] = 100 * 1024
        rows = [NewRow("d", "gw/d", i, b"x" * 3000) for i in range(1, 20)]
        with pytest.raises(Exception) as info:
            spool.insert(rows)
        assert getattr(info.value, "state", None) == "full"
        assert "disk full: 100 KiB free" in str(info.value)
        assert not spool._db.in_transaction
        assert (spool.count(), spool.size_bytes()) == on_disk(path) == (0, 0)
        assert spool.last_seqs() == {}
    finally:
        spool.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.Error) as err:
            ro.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
        assert classify(err.value, [path], 4096).state == "readonly"
    finally:
        ro.close()


# -- the file deleted or replaced while in use; seq never goes back ---------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_spool_file_deleted_or_replaced_while_running_is_written_anew(
        tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "s.db"
    box = Outbox(SqliteSpool(path), "gw", commit_interval=0.005)
    box.start()
    try:
        put_all(box, 100)
        assert box.flush(JOIN)
        with caplog.at_level(logging.WARNING, logger="gateway"):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            if how == "replaced":
                other = sqlite3.connect(path)
                other.execute("CREATE TABLE foreign_data (x)")
                other.close()
            assert wait_until(lambda: box.stats.recreated == 1, JOIN)
            put_all(box, 50, start=100)
            assert box.flush(JOIN)
        assert f"was {'deleted' if how == 'deleted' else 'replaced by another file'}" in caplog.text
        assert box.spool_state == "ok"
    finally:
        box.stop()
    # What the deleted file held, and what came after, is in the file at the path.
    assert seqs_on_disk(path, "d") == list(range(1, 151))
    if how == "replaced":
        aside = list(tmp_path.glob("s.db.replaced-*"))
        assert len(aside) == 1
        db = sqlite3.connect(aside[0])
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("foreign_data",)]
        db.close()


def test_seq_never_goes_back_when_the_spool_file_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    spool = SqliteSpool(path, lease_block=100)
    spool.insert([NewRow("a", "gw/a", s, b"{}") for s in range(1, 151)])
    spool.insert([NewRow("b", "gw/b", 1, b"{}")])
    # A crash: no close. An intact spool continues exactly where it was.
    del spool
    again = SqliteSpool(path, lease_block=100)
    assert again.last_seqs() == {"a": 150, "b": 1}
    again.insert([NewRow("a", "gw/a", 151, b"{}")])
    again._db.close()
    lease = SeqLease(Path(f"{path}.seq"))
    lease.load()
    assert lease.ceilings["a"] >= 151 and lease.ceilings["b"] >= 1
    # The spool file is lost (deleted, or moved aside as corrupt): a new one starts above
    # every seq that may have been published, never at 1.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    fresh = SqliteSpool(path, lease_block=100)
    try:
        seqs = fresh.last_seqs()
        assert seqs["a"] >= 151 and seqs["b"] >= 1
        assert seqs == lease.ceilings
        box = Outbox(fresh, "gw", commit_interval=0.001)
        box.start()
        box.put(Reading("a", {"v": 1}))
        assert box.flush(JOIN)
        assert [m.seq for m in box.take(10)] == [seqs["a"] + 1]
        box.stop()
    finally:
        fresh.close()


# -- an unwritable spool is refused at start ---------------------------------------------


def without_dac_override() -> None:
    """In the child, before exec: as root, give up the capabilities that let root write
    through file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER), so a
    read-only file or directory is read-only to it too. A no-op for other users."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_cli(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env,
                          preexec_fn=without_dac_override)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_unwritable_spool_is_refused_at_start_with_one_line(tmp_path: Path, what: str) -> None:
    spool_dir = tmp_path / "state"
    spool_dir.mkdir()
    spool = spool_dir / "spool.db"
    if what == "file":
        SqliteSpool(spool).close()  # a valid spool, made read-only; its directory is not
        for p in spool_dir.iterdir():
            os.chmod(p, 0o444)
    else:
        os.chmod(spool_dir, 0o555)
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(f"gateway: {{id: ro, simulate: true}}\nmqtt: {{host: 127.0.0.1, port: 1}}\n"
                   f"buffer:\n  path: {spool}\n")
    try:
        out = run_cli(["run", "-c", str(cfg)])
        assert out.returncode == 2, (out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        lines = [line for line in out.stderr.splitlines() if "buffer.path" in line]
        assert len(lines) == 1, out.stderr
        assert str(spool_dir) in lines[0] and "for writing" in lines[0]
        # `check` may run as another user than the service: it warns (exit 0).
        out = run_cli(["check", "-c", str(cfg)])
        assert "Traceback" not in out.stderr
        assert any("buffer.path: warning:" in line and str(spool_dir) in line
                   for line in out.stderr.splitlines()), out.stderr
    finally:
        os.chmod(spool_dir, 0o755)


# -- a file size limit in a real gateway process, with a real broker -------------------


def limited_gateway(cfg: Path, log: Path, fsize: int | None) -> subprocess.Popen[bytes]:
    """`edge-gateway run` whose files may not grow past `fsize` bytes (RLIMIT_FSIZE, as
    `ulimit -f` or systemd's LimitFSIZE= set it): writes past it fail with EFBIG, as on
    a full disk. SIGXFSZ is ignored there, as a daemon would."""
    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # survives exec
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    out = open(log, "ab")  # noqa: SIM115 - closed right after the fork
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--log-level", "info", "run", "-c", str(cfg)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=limit)
    finally:
        out.close()


def health_states(sub: Subscriber) -> list[str]:
    return [m.json()["spool"]["state"] for m in sub.on("gateway/fs/health")]


def test_file_size_limit_spool_full_recovers_and_stops_in_time(tmp_path: Path) -> None:
    # The subscriber's session outlives its connection, QoS 0 (health) included, so it
    # sees the health published in the moment the gateway reconnects, however fast.
    broker = Mosquitto(tmp_path / "broker", persistent=True,
                       extra_conf="queue_qos0_messages true\n")
    broker.start()
    sub = Subscriber(broker.port, "gateway/fs/#", client_id="fs-sub")
    sub.client.reconnect_delay_set(1, 1)
    sub.start()
    broker.stop()
    devices = "".join(
        f"  - {{name: t{i}, driver: tmp102, address: {0x48 + i}, interval: 2ms}}\n"
        for i in range(4))
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"gateway: {{id: fs, simulate: true, stop_timeout: 3s, health_interval: 1s}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, reconnect_min: 0.2, reconnect_max: 0.5, "
        f"max_inflight: 20}}\n"
        f"buffer: {{path: {tmp_path}/spool/spool.db}}\ndevices:\n{devices}")
    log = tmp_path / "gw.log"
    spool = tmp_path / "spool" / "spool.db"
    limit = 1_500_000  # beyond the WAL's own limit: the database file is what fills
    gw = limited_gateway(cfg, log, limit)
    try:
        # The broker is down: the spool grows until its files reach the limit.
        assert wait_until(lambda: "file size limit reached" in log.read_text(), 90), \
            log.read_text()[-3000:]
        text = log.read_text()
        assert "cannot rollback" not in text
        assert text.count("file size limit reached") == 1  # once per change of state
        assert all(p.stat().st_size <= limit for p in spool.parent.iterdir())
        # The broker comes back: what is spooled goes out, acks free room, the readings
        # that waited in memory go in, and health says so.
        broker.start()
        assert sub.wait_for(lambda s: "full" in health_states(s), 60), log.read_text()[-3000:]
        assert sub.wait_for(lambda s: health_states(s)[-1:] == ["ok"], 90), (
            health_states(sub), log.read_text()[-3000:])
        text = log.read_text()
        assert "writable again" in text
        # Broker down again, spool full again: SIGTERM still ends within stop_timeout.
        # At 2,000 readings/s the spool may be full again before the broker is stopped:
        # look for the report after the last "writable again", not after the stop.
        seen = text.rindex("writable again")
        broker.stop()
        assert wait_until(lambda: "file size limit reached" in log.read_text()[seen:], 90)
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(3 + 7) == 0, log.read_text()[-3000:]  # stop_timeout 3 s, and exit
        # Restarted without the limit, broker up: every accepted reading arrives.
        broker.start()
        backlog = newest_id(spool)
        gw = limited_gateway(cfg, log, None)
        # Drained: every row left from the full disk is gone (acks ride with the next
        # readings, so the table itself is never quite empty while readings flow).
        assert wait_until(lambda: oldest_id(spool) > backlog, 90), log.read_text()[-3000:]
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(30) == 0
        # Every seq ever given arrived, or waits in the spool for the next start (a stop
        # delivers for stop_timeout less a second: at 2,000 readings/s through an
        # in-flight window of 20, the last of them may still be waiting).
        db = sqlite3.connect(spool)
        last = dict(db.execute("SELECT device, seq FROM seqs").fetchall())
        waiting: dict[str, set[int]] = {}
        for dev, seq in db.execute("SELECT device, seq FROM messages"):
            waiting.setdefault(dev, set()).add(int(seq))
        db.close()
        # Readings dropped at a stop whose commit had failed after they were handed to
        # the publisher keep their seqs (they may be at the broker): a gap, at most as
        # large as what the log says was dropped. Nothing else may be missing.
        dropped = sum(int(n) for n in re.findall(r"(\d+) readings that were never accepted",
                                                 log.read_text()))
        names = ("t0", "t1", "t2", "t3")
        expected = {dev: set(range(1, last[dev] + 1)) - waiting.get(dev, set())
                    for dev in names}

        def missing() -> dict[str, list[int]]:
            out = {}
            for dev in names:
                got = sub.on(f"gateway/fs/{dev}")
                # Counted first: parsing every payload on each new message starved the
                # subscriber while ~25,000 were still on their way.
                if len(got) < len(expected[dev]) - dropped:
                    return {dev: [-1] * (len(expected[dev]) - len(got))}
                out[dev] = sorted(expected[dev] - {m.json()["seq"] for m in got})
            return out

        assert wait_until(lambda: sum(map(len, missing().values())) <= dropped, 60), (
            dropped, {d: (len(m), m[:30]) for d, m in missing().items()})
        for dev in names:
            got = {m.json()["seq"] for m in sub.on(f"gateway/fs/{dev}")}
            assert got <= set(range(1, last[dev] + 1)), dev
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        sub.stop()
        broker.stop()


def test_spool_files_stay_within_max_bytes_plus_the_margin(tmp_path: Path) -> None:
    from gateway.outbox.spool import margin_bytes

    path = tmp_path / "s.db"
    max_bytes = 2 * 1024 * 1024
    spool = SqliteSpool(path, max_bytes=max_bytes, when_full="drop_oldest", sync="normal")
    try:
        largest = 0
        seq = 0
        for round_ in range(120):
            # Broker down, then acks of some of what went out, in commit-sized batches of
            # readings of varying size: the file fills, the policy drops the oldest.
            rows = []
            for _ in range(500):
                seq += 1
                rows.append(NewRow("dev", "gateway/x/dev", seq, b"v" * (40 + seq % 200)))
            spool.insert(rows)
            if round_ % 3 == 0:
                spool.delete([m.id for m in spool.fetch(0, 300)])
            largest = max(largest, spool.files_bytes())
            assert spool.size_bytes() <= max_bytes
        assert (spool.count(), spool.size_bytes()) == on_disk(path)
    finally:
        spool.close()
    print(f"largest total of the spool's files: {largest} bytes for max_bytes {max_bytes} "
          f"(margin {margin_bytes()} bytes)")
    assert largest <= max_bytes + margin_bytes()


# -- a real file system that fills up -------------------------------------------------------

_SMALL_FS_CHILD = r'''
import json, os, subprocess, sys, time
from pathlib import Path
from gateway.outbox import Outbox
from gateway.outbox.spool import SqliteSpool
from gateway.reading import Reading
from tests.support import wait_until

out = {}
d = Path(sys.argv[1])
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={sys.argv[2]}", "tmpfs", str(d)],
               check=True)
# sync: full: the syncer runs (for the WAL, or for the burst journal)
spool = SqliteSpool(d / "s.db", journal=sys.argv[3] == "journal")
out["journal"] = spool._journal is not None
box = Outbox(spool, "gw", queue_size=100_000, put_timeout=60.0)
box.start()
out["syncer"] = spool._syncer is not None and spool._syncer.alive()
n = 0

def put(k):
    global n
    for _ in range(k):
        n += 1
        assert box.put(Reading("d", {"v": n, "pad": "x" * 200}))

seen = []
def drain():
    got = box.take(500)
    seen.extend(m.seq for m in got)
    box.ack(m.id for m in got)
    return got

put(300)
assert box.flush(60)
# The file system fills up for real: another file takes every free block.
filler = d / "filler"
fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
try:
    while True:
        os.write(fd, b"\0" * 4096)
except OSError as exc:
    out["filler_error"] = exc.errno
finally:
    os.close(fd)
put(3000)
out["full_seen"] = wait_until(lambda: box.spool_state == "full", 60)
out["error"] = box.spool_error
out["waiting_or_stored"] = wait_until(lambda: box.depth() + box.stats.delivered == n, 60)
# Space comes back; the broker acknowledges everything it is given.
filler.unlink()
out["recovered"] = wait_until(lambda: (drain() or True) and box.spool_state == "ok"
                              and len(seen) == n and box.depth() == 0, 120)
out["in_order"] = seen == list(range(1, n + 1))
out["n"], out["seen"] = n, len(seen)
out["thread_errors"] = box.stats.thread_errors
box.stop()
out["synced"] = spool._syncer is not None and not spool._syncer.alive()
print(json.dumps(out))
'''


def _user_namespaces() -> str | None:
    """Why a private mount namespace cannot be had here (None: it can)."""
    import shutil
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                       capture_output=True, text=True, timeout=30)
    return None if p.returncode == 0 else f"unshare: {p.stderr.strip()}"


@pytest.mark.parametrize(("size", "journal"), [("2m", False), ("24m", False), ("24m", True)])
def test_a_real_small_file_system_that_fills_up_loses_nothing(tmp_path: Path, size: str,
                                                              journal: bool) -> None:
    """A tmpfs (mounted in a user and mount namespace of a child, so a normal user can
    too) filled to the last block by another file: the spool stops taking rows, readings
    wait in memory, nothing is lost or reordered, and once the file is gone the spool is
    writable again. The real statvfs and the real ENOSPC, not a stand-in. 2 MiB: the
    spool looks at the disk in full at every commit; 24 MiB: it starts with more than
    16 MiB free, where it re-sets its cap only when the free space moves
    (`_limit_growth`), and must still see the disk fill between two commits. With the
    burst journal (preallocated, so its own writes never meet ENOSPC): the readings it
    holds must still reach SQLite, or new ones wait, once the ring comes round."""
    why = _user_namespaces()
    if why is not None:
        pytest.skip(f"a private mount namespace is not available here ({why})")
    mnt = tmp_path / "small"
    mnt.mkdir()
    p = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable,
                        "-c", _SMALL_FS_CHILD, str(mnt), size,
                        "journal" if journal else "sqlite"], cwd=REPO, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    import json
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["syncer"] and out["filler_error"] == 28  # ENOSPC: the file system is full
    assert out["journal"] == journal
    assert out["full_seen"], out
    assert "disk full: 0 KiB free" in (out["error"] or ""), out  # the real statvfs said so
    assert out["waiting_or_stored"], out
    assert out["recovered"] and out["in_order"], out
    assert out["thread_errors"] == 0 and out["synced"], out
