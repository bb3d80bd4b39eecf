"""WAL checkpoints of a SQLite file in a background thread, off the request path.

SQLite's automatic checkpoint runs inside whichever commit crosses 1,000 WAL pages: that commit copies
the WAL into the database file (and syncs it) before it returns. On the service's hot path (the online
store's insert and the feedback log's ``scored`` row, one commit each per ``/score``) that was a pause of
several to ~50 ms every few hundred requests (measured in-process: the feedback log's commit had p99.9
7.3 ms and max 27 ms with it; bench/results/latency.md has the served figures).

:class:`WalCheckpoints` turns the automatic checkpoint off for the connections that call
:func:`no_autocheckpoint` and runs one every :data:`EVERY_S` on its own connection instead. A subclass
may add a chore to each round (the online store evicts expired rows there).
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from pathlib import Path

#: How often the thread checkpoints the WAL into the database file.
EVERY_S = 0.1
#: WAL size (pages) at which the thread also restarts the WAL. A passive checkpoint never blocks anyone,
#: but under steady writes it never catches up with the last frames, so the WAL would grow without end;
#: a restart blocks writers only while it copies the few frames written since the passive one.
RESTART_WAL_PAGES = 4_000
#: How long the thread waits for a lock (ms). A restart holds the writer lock while it waits for readers, so
#: with the request path's 30 s timeout a restart could hold every worker's writes up to that long; it now
#: gives up after this and tries again on the next round.
BUSY_MS = 20


def no_autocheckpoint(db: sqlite3.Connection) -> None:
    """Leave this connection's checkpoints to a :class:`WalCheckpoints` thread (WAL mode)."""
    db.execute("PRAGMA wal_autocheckpoint=0")


def checkpoint(db: sqlite3.Connection) -> int:
    """One passive checkpoint, and a restart when the WAL has grown past :data:`RESTART_WAL_PAGES`; its pages."""
    # fetchall: a statement left unfinished would hold a read lock and stop the WAL restarting.
    (_, pages, _), *_ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    if pages >= RESTART_WAL_PAGES:
        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    return int(pages)


class WalCheckpoints:
    """A daemon thread checkpointing ``path`` every :data:`EVERY_S` while ``owner`` lives and until :attr:`stop`."""

    def __init__(self, path: Path, owner: object, name: str = "checkpoints") -> None:
        self.stop = threading.Event()
        alive = weakref.ref(owner)  # an owner dropped without closing ends its thread too
        self._thread = threading.Thread(target=self._run, args=(path, alive), name=f"{name} {path.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and wait for it: no checkpoint runs after this returns."""
        self.stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self, path: Path, alive: weakref.ref[object]) -> None:
        db = sqlite3.connect(path, timeout=BUSY_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            while not self.stop.wait(EVERY_S) and alive() is not None:
                try:
                    self.chore(db)
                    checkpoint(db)
                except sqlite3.OperationalError:  # busy or locked: the next round catches up
                    self.busy()
        finally:
            db.close()

    def chore(self, db: sqlite3.Connection) -> None:
        """Work of a subclass's own, done at the start of each round on the thread's connection."""

    def busy(self) -> None:
        """Called when a round found the file busy or locked (the next round runs anyway)."""
