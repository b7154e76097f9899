"""The stream reader's bookkeeping of where it is: the offset it takes up again after a lost connection."""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection

from workers.runtime.stream import STREAM_OFFSET, StreamReader


class StreamMessage:
    """A stream message as the reader gets it; its ack fails once the connection is gone."""

    def __init__(self, offset: int, *, connection_gone: bool = False) -> None:
        self.headers = {STREAM_OFFSET: offset}
        self.connection_gone = connection_gone
        self.acks: list[bool] = []

    def ack(self, multiple: bool = False) -> None:
        if self.connection_gone:
            raise ConnectionResetError("the connection was lost")
        self.acks.append(multiple)


def test_a_message_read_after_the_connection_died_is_taken_before_its_failing_ack_moves_the_reader_on():
    taken: list[int] = []

    def take(message: Any) -> bool:
        taken.append(message.headers[STREAM_OFFSET])
        return True

    with Connection("memory://") as connection:
        reader = StreamReader(connection, "archive", offset="first", take=take, prefetch=2)
        first = StreamMessage(10)
        reader.accept("archive", None, first)
        assert taken == [10] and reader.last_offset == 10 and first.acks == [True]
        # Read from the socket's buffer after the connection died: its credit cannot be granted,
        # and the error is what makes the runtime reconnect from the offset after the last read.
        with pytest.raises(ConnectionResetError):
            reader.accept("archive", None, StreamMessage(11, connection_gone=True))
        # Taken, so the reconnect goes on from 12 and nothing is left unread or read twice.
        assert taken == [10, 11] and reader.last_offset == 11


def test_the_reader_stops_at_the_message_take_declines_and_records_it_as_read():
    seen: list[Any] = []

    def take(message: Any) -> bool:
        seen.append(message.headers[STREAM_OFFSET])
        return message.headers[STREAM_OFFSET] < 5

    with Connection("memory://") as connection:
        reader = StreamReader(connection, "archive", offset="first", take=take, prefetch=4)
        for offset in (4, 5, 6):
            reader.accept("archive", None, StreamMessage(offset))
        assert seen == [4, 5] and reader.should_stop and reader.last_offset == 5 and reader.read == 2
