"""The next part of a blob, read from the source while the current one uploads."""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Iterator

from ..deadline import propagate
from ..registry.blob import BlobStream


class _Marker(enum.Enum):
    END = "end"


_END = _Marker.END
#: What the reader hands over: a filled buffer and its length, its error, or the end.
_Item = tuple[bytearray, int] | BaseException | _Marker


class ReadAhead:
    """Reads the next part from the source in a thread while the caller uploads.

    Two part buffers per blob, reused from part to part: one being uploaded,
    one being filled. Memory per blob stays at two parts (none bigger than the
    blob), whatever the blob's size, and nothing is allocated per part.
    """

    BUFFERS = 2

    def __init__(self, stream: BlobStream, part_size: int) -> None:
        self._stream = stream
        self._buffer_size = max(1, min(part_size, stream.size)) if stream.size else part_size
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._allocated = 0
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=self.BUFFERS)
        self._stop = threading.Event()
        # The source reads retry: they answer to the copy's deadline too.
        self._thread = threading.Thread(target=propagate(self._run),
                                        name=f"read-{stream.digest[7:19]}", daemon=True)

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _buffer(self) -> bytearray | None:
        """A free buffer (the second one is made only when the blob needs it); None on stop."""
        if self._allocated < self.BUFFERS and self._free.empty():
            self._allocated += 1
            return bytearray(self._buffer_size)
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _run(self) -> None:
        try:
            while (buffer := self._buffer()) is not None:
                n = self._stream.readinto(buffer)
                if n and not self._put((buffer, n)):
                    return
                if n < len(buffer):
                    self._put(_END)
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self) -> Iterator[memoryview]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            buffer, n = item
            try:
                yield memoryview(buffer)[:n]
            finally:  # the caller is done with the part: the reader may fill it again
                self._free.put(buffer)

    def __enter__(self) -> ReadAhead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # The reader may be inside a network read; it notices `_stop` when
        # that returns (the caller closes the stream), and it is a daemon.
        self._thread.join(timeout=5)
