"""Write a history as JSONL (one flushed line per record) and read it back."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import TracebackType

from harness.history.records import History, HistoryFormatError, Record, record_from_dict


class HistoryWriter:
    """Appends records to a JSONL file, flushing each line, and keeps them in memory.

    Thread-safe: the client, the nemesis and observers may write from different threads.
    A fault window is written when it opens (``end`` null) and again when it closes;
    readers keep the last line per ``fault_id``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self.history = History()

    def write(self, record: Record) -> Record:
        """Append ``record`` to the file (flushed) and to :attr:`history`; returns it."""
        line = json.dumps(record.to_dict(), default=str, separators=(",", ":"))
        with self._lock:
            if self._file.closed:
                raise ValueError(f"history {self.path} is closed")
            self._file.write(line + "\n")
            self._file.flush()
            self.history.add(record)
        return record

    def close(self) -> None:
        """Close the file; later writes raise."""
        with self._lock:
            self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_history(path: str | Path) -> History:
    """Read a JSONL history; a bad line raises :class:`HistoryFormatError` naming the line."""
    history = History()
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                history.add(record_from_dict(json.loads(line)))
            except (json.JSONDecodeError, HistoryFormatError) as exc:
                raise HistoryFormatError(f"{path}:{number}: {exc}") from None
    return history
