"""Content-addressed store of LLM call results, written as results arrive.

Key = sha256 of the canonical JSON of everything that determines a result (backend, model, sampling
settings, messages, sample index / seed). Stored in SQLite (WAL mode, one transaction per result
batch), so a run killed at any point keeps every finished call and a rerun makes only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable


def call_key(payload: dict[str, Any]) -> str:
    """Stable key of one call: sha256 over canonical (sorted, compact, UTF-8) JSON."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """A durable key -> JSON value store with hit/miss counters."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
            "created REAL DEFAULT (julianday('now')))"
        )
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """Values of the keys present in the store."""
        found: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._conn.execute(q, chunk):
                    found[k] = json.loads(v)
        self.hits += len(found)
        self.misses += len(set(keys) - set(found))
        return found

    def put_many(self, items: dict[str, Any]) -> None:
        """Store results durably (one transaction)."""
        if not items:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with self._lock:
            self._conn.execute("BEGIN")
            self._conn.executemany("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def cached_values(cache: CallCache | None, keys: list[str], compute: Callable[[list[int]], list[Any]],
                  flush_every: int = 64) -> list[Any]:
    """The value of each key: from ``cache`` when present, else from ``compute``.

    ``compute`` gets the positions (in ``keys``) of the first occurrence of each missing key - identical
    keys are computed once - and returns their values in that order. It is called on ``flush_every``
    missing keys at a time and each part is stored before the next is computed, so a process killed
    mid-way loses at most the part in flight: a rerun computes only what is missing, in the same parts.
    With ``cache=None`` everything is computed in one call (still once per distinct key).
    """
    if flush_every < 1:
        raise ValueError(f"flush_every must be >= 1, not {flush_every}")
    found = cache.get_many(keys) if cache is not None else {}
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in found:
            first.setdefault(k, i)
    todo = list(first.values())
    step = flush_every if cache is not None else max(1, len(todo))
    for start in range(0, len(todo), step):
        part = todo[start : start + step]
        values = compute(part)
        if len(values) != len(part):
            raise ValueError(f"compute returned {len(values)} values for {len(part)} keys")
        new = {keys[i]: v for i, v in zip(part, values)}
        if cache is not None:
            cache.put_many(new)  # durable before the next part is computed
        found.update(new)
    return [found[k] for k in keys]
