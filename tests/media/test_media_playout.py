"""PlayoutBuffer: the queue pjmedia's clock thread reads every 20 ms."""

from __future__ import annotations

import threading

import pytest

from gateway.media.playout import PlayoutBuffer

FRAME = 320


def _ramp(n: int, start: int = 0) -> bytes:
    return bytes((start + i) % 251 for i in range(n))


def _drain(buf: PlayoutBuffer) -> list[bytes]:
    frames = []
    while (f := buf.read_frame()) is not None:
        frames.append(f)
    return frames


def test_empty_buffer_reads_none_without_underrun() -> None:
    buf = PlayoutBuffer()
    assert buf.read_frame() is None
    assert buf.underruns == 0 and buf.frames_out == 0 and buf.queued_bytes == 0


@pytest.mark.parametrize("chunk", [1, 7, 100, 320, 321, 1000, 4096])
def test_order_is_kept_across_any_chunking(chunk: int) -> None:
    data = _ramp(10 * FRAME)
    buf = PlayoutBuffer()
    for i in range(0, len(data), chunk):
        buf.write(data[i : i + chunk])
    assert buf.queued_bytes == len(data)
    frames = _drain(buf)
    assert all(len(f) == FRAME for f in frames)
    assert b"".join(frames) == data
    assert buf.frames_out == 10 and buf.played_bytes == len(data) and buf.queued_bytes == 0


def test_last_partial_frame_is_zero_padded() -> None:
    buf = PlayoutBuffer()
    data = _ramp(FRAME + 50, start=1)
    buf.write(data)
    first, last = _drain(buf)
    assert first == data[:FRAME]
    assert last == data[FRAME:] + bytes(FRAME - 50)
    assert buf.played_bytes == FRAME + 50  # padding is not counted
    assert buf.frames_out == 2


def test_custom_frame_size() -> None:
    buf = PlayoutBuffer(frame_bytes=160)
    buf.write(_ramp(400))
    assert [len(f) for f in _drain(buf)] == [160, 160, 160]


@pytest.mark.parametrize("size", [0, -2, 3])
def test_bad_frame_size_is_rejected(size: int) -> None:
    with pytest.raises(ValueError):
        PlayoutBuffer(frame_bytes=size)


def test_write_copies_the_callers_buffer() -> None:
    buf = PlayoutBuffer()
    scratch = bytearray(b"\x01" * FRAME)
    buf.write(scratch)
    scratch[:] = b"\x02" * FRAME
    assert buf.read_frame() == b"\x01" * FRAME


def test_pause_keeps_queue_and_resume_continues_where_it_stopped() -> None:
    buf = PlayoutBuffer()
    data = _ramp(3 * FRAME)
    buf.write(data)
    assert buf.read_frame() == data[:FRAME]
    buf.begin_stream()
    buf.pause()
    assert buf.paused
    assert buf.read_frame() is None and buf.read_frame() is None
    assert buf.queued_bytes == 2 * FRAME
    assert buf.underruns == 0  # a pause is not an underrun
    buf.resume()
    assert buf.read_frame() == data[FRAME : 2 * FRAME]
    assert buf.read_frame() == data[2 * FRAME :]


def test_clear_drops_everything_and_is_idempotent() -> None:
    buf = PlayoutBuffer()
    buf.begin_stream()
    buf.write(_ramp(5 * FRAME + 10))
    buf.read_frame()
    assert buf.clear() == 4 * FRAME + 10
    assert buf.clear() == 0
    assert buf.queued_bytes == 0 and not buf.streaming
    assert buf.read_frame() is None
    assert buf.underruns == 0  # clear ended the stream


def test_clear_mid_chunk_then_new_audio_plays_from_its_start() -> None:
    buf = PlayoutBuffer()
    buf.write(_ramp(1000))
    buf.read_frame()  # leaves an offset inside the first chunk
    buf.clear()
    fresh = _ramp(FRAME, start=77)
    buf.write(fresh)
    assert buf.read_frame() == fresh


def test_clear_also_unpauses() -> None:
    buf = PlayoutBuffer()
    buf.write(_ramp(FRAME))
    buf.pause()
    buf.clear()
    assert not buf.paused
    buf.write(b"\x05" * FRAME)
    assert buf.read_frame() == b"\x05" * FRAME


def test_underruns_count_only_while_streaming() -> None:
    buf = PlayoutBuffer()
    buf.read_frame()
    assert buf.underruns == 0
    buf.begin_stream()
    buf.read_frame()
    buf.read_frame()
    assert buf.underruns == 2
    buf.end_stream()
    buf.read_frame()
    assert buf.underruns == 2


def test_streaming_holds_back_a_partial_frame_until_more_arrives() -> None:
    buf = PlayoutBuffer()
    buf.begin_stream()
    data = _ramp(FRAME + 100)
    buf.write(data[: FRAME + 40])
    assert buf.read_frame() == data[:FRAME]
    assert buf.read_frame() is None  # 40 bytes held: padding here would gap the speech
    assert buf.underruns == 1
    buf.write(data[FRAME + 40 :])
    buf.end_stream()
    assert buf.read_frame() == data[FRAME:] + bytes(FRAME - 100)


def test_on_drained_fires_once_per_transition_to_empty() -> None:
    calls: list[int] = []
    buf = PlayoutBuffer(on_drained=lambda: calls.append(buf.queued_bytes))
    buf.write(_ramp(2 * FRAME))
    buf.read_frame()
    assert calls == []
    buf.read_frame()
    assert calls == [0]  # called outside the lock: the callback can use the buffer
    buf.read_frame()
    buf.read_frame()
    assert calls == [0]  # staying empty is not a new transition
    buf.write(_ramp(10))
    buf.read_frame()
    assert calls == [0, 0]


def test_on_drained_not_called_by_clear() -> None:
    calls: list[None] = []
    buf = PlayoutBuffer(on_drained=lambda: calls.append(None))
    buf.write(_ramp(3 * FRAME))
    buf.read_frame()
    buf.clear()
    buf.read_frame()
    assert calls == []


def test_on_drained_runs_on_the_reading_thread() -> None:
    seen: list[threading.Thread] = []
    buf = PlayoutBuffer(on_drained=lambda: seen.append(threading.current_thread()))
    buf.write(_ramp(FRAME))
    reader = threading.Thread(target=buf.read_frame)
    reader.start()
    reader.join()
    assert seen == [reader]


def test_producer_and_consumer_threads_lose_and_duplicate_nothing() -> None:
    total = 2_000_100  # not a whole number of frames: the tail gets padded
    sizes = [1, 3, 160, 319, 320, 321, 640, 999, 4000]
    data = bytes(i * 7 % 256 for i in range(total))
    buf = PlayoutBuffer()
    got: list[bytes] = []
    done = threading.Event()

    def produce() -> None:
        buf.begin_stream()
        pos = i = 0
        while pos < total:
            n = sizes[i % len(sizes)]
            buf.write(data[pos : pos + n])
            pos += n
            i += 1
        buf.end_stream()
        done.set()

    def consume() -> None:
        while True:
            frame = buf.read_frame()
            if frame is not None:
                assert len(frame) == FRAME
                got.append(frame)
            elif done.is_set() and buf.queued_bytes == 0:
                return

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    out = b"".join(got)
    assert buf.played_bytes == total
    assert out[:total] == data
    assert out[total:] == bytes(len(out) - total)  # only the final frame's padding
    assert buf.frames_out == len(got) == -(-total // FRAME)
