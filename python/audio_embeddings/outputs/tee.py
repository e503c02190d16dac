"""Several engine writers as one (per-file outputs and a perch-hoplite database, a runner table and a database)."""

from __future__ import annotations

from typing import Any


class TeeWriter:
    """Several engine writers as one: a file is complete when every writer has it."""

    def __init__(self, *writers: Any):
        self.writers = writers

    def is_complete(self, key: str) -> bool:
        return all(w.is_complete(key) for w in self.writers)

    def write(self, key: str, result: Any, *, input_path: str, audio_info: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for w in self.writers:
            if not w.is_complete(key):
                out.update(w.write(key, result, input_path=input_path, audio_info=audio_info))
        return out

    def close(self) -> None:
        for w in self.writers:
            w.close()
