"""BufferedSocket on real, non-blocking sockets: what paho reads and writes through it."""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Iterator

import pytest

from gateway.mqtt.buffered_socket import READ_CHUNK, WRITE_HIGH_WATER, BufferedSocket


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(ours, peer): a connected stream pair, both non-blocking, closed afterwards."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    try:
        yield ours, peer
    finally:
        ours.close()
        peer.close()


def readable(sock: socket.socket | BufferedSocket, timeout: float = 0.0) -> bool:
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def wait_readable(sock: socket.socket | BufferedSocket, timeout: float = 5.0) -> None:
    assert readable(sock, timeout), "nothing arrived"


def drain(peer: socket.socket) -> bytes:
    """Everything the peer can read right now, without waiting."""
    out = bytearray()
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def read_until_eof(peer: socket.socket, timeout: float = 5.0) -> bytes:
    out = bytearray()
    while True:
        wait_readable(peer, timeout)
        chunk = peer.recv(1 << 20)
        if not chunk:
            return bytes(out)
        out += chunk


def encode_length(n: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_packets(count: int) -> list[bytes]:
    """PUBACKs and PUBLISHes of assorted sizes (1-, 2- and 3-byte lengths)."""
    packets: list[bytes] = []
    for i in range(count):
        if i % 3 == 0:
            body = (i % 65536).to_bytes(2, "big")
            packets.append(b"\x40" + encode_length(len(body)) + body)
        else:
            size = (i * 37) % 300 if i % 50 else 20_000 + i
            body = b"\x00\x05t/abc" + bytes((i + k) % 256 for k in range(size))
            packets.append(b"\x30" + encode_length(len(body)) + body)
    return packets


def recv_packet(bs: BufferedSocket, sock: socket.socket) -> bytes | None:
    """Read one packet the way paho does: recv(1) command, recv(1) per length byte,
    then recv(remaining) until the body is complete. None at EOF."""

    def recv(n: int) -> bytes:
        while True:
            try:
                return bs.recv(n)
            except BlockingIOError:
                wait_readable(sock)

    cmd = recv(1)
    if not cmd:
        return None
    header = bytearray(cmd)
    remaining, mult = 0, 1
    while True:
        b = recv(1)
        assert len(b) == 1
        header += b
        remaining += (b[0] & 0x7F) * mult
        mult *= 128
        if not b[0] & 0x80:
            break
    body = bytearray()
    while len(body) < remaining:
        chunk = recv(remaining - len(body))
        assert chunk, "EOF inside a packet"
        assert len(chunk) <= remaining - len(body)
        body += chunk
    return bytes(header + body)


# -- reading -------------------------------------------------------------------------


def test_paho_style_reads_return_the_exact_packet_stream(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    packets = mqtt_packets(600)
    stream = b"".join(packets)
    assert len(stream) > 3 * READ_CHUNK  # several underlying reads, packets cut across them

    def write() -> None:
        peer.setblocking(True)
        peer.sendall(stream)
        peer.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write, name="test-peer-writer", daemon=True)
    writer.start()
    bs = BufferedSocket(ours)
    got: list[bytes] = []
    while (p := recv_packet(bs, ours)) is not None:
        got.append(p)
    writer.join(5)
    assert not writer.is_alive()
    assert got == packets
    assert bs.recv(1) == b""  # still EOF


def test_recv_slices_one_read_and_pending_counts_what_is_left(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    data = bytes(range(256)) * 4  # 1024 bytes, all in the kernel before the first recv
    peer.sendall(data)
    wait_readable(ours)
    bs = BufferedSocket(ours)
    assert bs.pending() == 0  # nothing read from the socket yet
    assert bs.recv(1) == data[:1]
    # One read took everything the kernel had: the socket is empty, the rest is buffered.
    assert not readable(ours)
    assert bs.pending() == len(data) - 1
    assert bs.recv(1) == data[1:2]
    assert bs.recv(10) == data[2:12]
    assert bs.pending() == len(data) - 12
    # A request larger than what is buffered returns only what is buffered (a short read).
    assert bs.recv(5000) == data[12:]
    assert bs.pending() == 0
    with pytest.raises(BlockingIOError):
        bs.recv(1)


def test_recv_reads_at_most_one_chunk_at_a_time(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    data = os.urandom(READ_CHUNK + 5000)
    peer.sendall(data)
    wait_readable(ours)
    bs = BufferedSocket(ours)
    first = bs.recv(1)
    assert first == data[:1]
    held = bs.pending()
    assert 0 < held <= READ_CHUNK - 1
    assert readable(ours)  # the rest stays in the kernel until the buffer is used up
    rest = bytearray()
    while len(rest) < len(data) - 1:
        try:
            rest += bs.recv(7000)
        except BlockingIOError:
            wait_readable(ours)
    assert first + rest == data


def test_recv_raises_blocking_io_error_when_nothing_is_there(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    with pytest.raises(BlockingIOError):
        bs.recv(1)
    assert bs.pending() == 0
    peer.sendall(b"\x40\x02\x00\x01")
    wait_readable(ours)
    assert bs.recv(100) == b"\x40\x02\x00\x01"
    with pytest.raises(BlockingIOError):  # buffer used up, socket empty again
        bs.recv(1)


def test_recv_returns_empty_bytes_at_eof_after_buffered_data(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    peer.sendall(b"\xd0\x00")  # PINGRESP, then the broker goes away
    peer.close()
    wait_readable(ours)
    bs = BufferedSocket(ours)
    assert bs.recv(1) == b"\xd0"
    assert bs.recv(1) == b"\x00"  # buffered bytes first
    assert bs.recv(1) == b""
    assert bs.recv(1) == b""


def test_recv_returns_empty_bytes_when_peer_closes(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    peer.close()
    wait_readable(ours)
    assert bs.recv(1) == b""
    assert bs.pending() == 0


# -- writing -------------------------------------------------------------------------


def test_send_buffers_until_flush(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    packets = [b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 101)]
    for p in packets:
        assert bs.send(p) == len(p)
    assert bs.send(bytearray(b"\xc0\x00")) == 2  # PINGREQ as a bytearray
    expected = b"".join(packets) + b"\xc0\x00"
    assert bs.buffered_output == len(expected)
    assert not readable(peer, 0.05)  # nothing reached the socket yet
    with pytest.raises(BlockingIOError):
        peer.recv(100)
    bs.flush()
    assert bs.buffered_output == 0
    wait_readable(peer)
    assert drain(peer) == expected
    bs.flush()  # nothing buffered: a no-op
    assert not readable(peer, 0.05)


def test_flush_keeps_what_the_kernel_refuses_and_sends_it_later(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    data = os.urandom(4 * 1024 * 1024)  # far more than the socket buffers hold
    assert bs.send(data) == len(data)
    bs.flush()  # the peer is not reading: must not raise or block
    left = bs.buffered_output
    assert 0 < left < len(data)
    bs.flush()  # still nothing read: still no error, nothing lost
    assert bs.buffered_output == left
    got = bytearray()
    for _ in range(10_000):
        got += drain(peer)
        bs.flush()
        if not bs.buffered_output and len(got) == len(data):
            break
        select.select([peer], [], [], 1.0)
    assert bs.buffered_output == 0
    assert bytes(got) == data


def test_send_refuses_past_high_water_when_the_peer_never_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    chunk_size = 16 * 1024
    accepted = bytearray()
    refused: bytes | None = None
    for i in range(2000):  # 32 MB at most: far more than the kernel will hold
        chunk = bytes([i % 251]) * chunk_size
        try:
            n = bs.send(chunk)
        except BlockingIOError:
            refused = chunk
            break
        assert n == len(chunk)
        accepted += chunk
    assert refused is not None, "send() never pushed back"
    assert bs.buffered_output >= WRITE_HIGH_WATER
    assert bs.buffered_output < WRITE_HIGH_WATER + chunk_size
    with pytest.raises(BlockingIOError):  # still stuck: still refused
        bs.send(b"x")
    # Once the peer reads, the backlog goes out and send() accepts again; the refused
    # chunk was not kept, so the peer sees exactly what send() accepted.
    got = bytearray()
    for _ in range(10_000):
        got += drain(peer)
        bs.flush()
        if not bs.buffered_output and len(got) == len(accepted):
            break
        select.select([peer], [], [], 1.0)
    assert bs.buffered_output == 0
    assert bytes(got) == bytes(accepted)
    assert bs.send(b"\xe0\x00") == 2
    bs.flush()
    wait_readable(peer)
    assert drain(peer) == b"\xe0\x00"


def test_close_delivers_buffered_output(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    bs.send(b"\x30\x07\x00\x03a/bxy")
    bs.send(b"\xe0\x00")  # DISCONNECT
    assert not readable(peer, 0.05)
    bs.close()
    assert ours.fileno() == -1
    assert read_until_eof(peer) == b"\x30\x07\x00\x03a/bxy\xe0\x00"


def test_close_delivers_more_than_the_kernel_holds_to_a_reading_peer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    data = os.urandom(2 * 1024 * 1024)
    bs.send(data)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(read_until_eof(peer, 10.0)),
                              name="test-peer-reader", daemon=True)
    reader.start()
    bs.close()
    reader.join(10)
    assert not reader.is_alive()
    assert got == [data]


def test_close_is_bounded_when_the_peer_never_reads(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    bs = BufferedSocket(ours)
    bs.send(os.urandom(4 * 1024 * 1024))
    closer = threading.Thread(target=bs.close, name="test-closer", daemon=True)
    closer.start()
    closer.join(10)
    assert not closer.is_alive(), "close() blocked on a peer that never reads"
    assert ours.fileno() == -1
    assert bs.buffered_output == 0
    # The peer got a prefix of the data, then EOF.
    assert read_until_eof(peer)  # some bytes went out before the timeout


def test_fileno_and_setblocking_reach_the_socket(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _peer = pair
    bs = BufferedSocket(ours)
    assert bs.fileno() == ours.fileno()
    bs.setblocking(True)
    assert ours.getblocking()
    bs.setblocking(False)
    assert not ours.getblocking()
