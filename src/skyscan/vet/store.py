"""Grades of search candidates by eye, kept in SQLite, and what they add up to.

The scale is the one large lens searches grade on (SuGOHI, DES, DESI Legacy Surveys, Euclid
Q1): 0 not a lens, 1 possible, 2 probable, 3 definite.  One SQLite file holds every grade of
every grader; it runs in WAL mode so that several graders' requests (threads or processes)
write at once without "database is locked" failures, and a grader's re-grade of an item
replaces their earlier one.

Items are known to the page only by an opaque key (a hash of a secret kept in the database
and the item's source), so the page never says which items are simulated; the ``items``
table maps keys back to a candidate id or to a row of the simulated test split.

Tables::

    meta(key, value)                      the secret of the keys, the schema version
    items(item, simulated, ref, label)    ref: candidate id (text) or test-split row
    grades(grader, item, grade, graded_at)  one row per (grader, item)
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from skyscan.core.errors import InputFileError, UsageError
from skyscan.evaluate.metrics import wilson_interval

__all__ = [
    "GRADES",
    "GradeStore",
    "consensus",
    "consensus_class",
    "grader_stats",
    "MIN_GRADERS",
    "FOUND_GRADE",
]

#: The grading scale.
GRADES = {0: "not a lens", 1: "possible", 2: "probable", 3: "definite"}
#: Graders a candidate needs before it has a consensus grade.
MIN_GRADERS = 3
#: A simulated stamp graded at least this counts as found (completeness, purity).
FOUND_GRADE = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item TEXT PRIMARY KEY,
    simulated INTEGER NOT NULL,
    ref TEXT NOT NULL,
    label INTEGER
);
CREATE TABLE IF NOT EXISTS grades (
    grader TEXT NOT NULL,
    item TEXT NOT NULL REFERENCES items(item),
    grade INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 3),
    graded_at REAL NOT NULL,
    PRIMARY KEY (grader, item)
);
"""


class GradeStore:
    """The grades database of one results folder.

    Parameters
    ----------
    path : str or Path
        The SQLite file; created (with its folder) if missing.

    Notes
    -----
    Every call opens its own connection, so one store may be shared by the web server's
    worker threads; SQLite's WAL journal lets readers run beside the one writer and
    ``timeout`` makes a writer wait for another rather than fail.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                db.executescript(_SCHEMA)
                db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(16),)
                )
                self._secret = db.execute("SELECT value FROM meta WHERE key='secret'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InputFileError(
                f"{self.path}: not a usable grades database ({exc})", path=self.path
            ) from None
        if mode.lower() != "wal":
            raise InputFileError(
                f"{self.path}: SQLite refused WAL mode (journal_mode={mode}); put the "
                "database on a local disk",
                path=self.path,
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        # Durable once committed in WAL mode without an fsync per grade.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def journal_mode(self) -> str:
        """The database's journal mode (``"wal"``)."""
        with self._connect() as db:
            return db.execute("PRAGMA journal_mode").fetchone()[0]

    def item_key(self, simulated: bool, ref) -> str:
        """The opaque key of a candidate (``ref`` its id) or simulated stamp (its row)."""
        text = f"{self._secret}:{'sim' if simulated else 'real'}:{ref}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def register(self, rows: Iterable[tuple[str, bool, str, int | None]]) -> None:
        """Record ``(item, simulated, ref, label)`` of the items shown (kept if known)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)",
                [(k, int(s), str(r), None if lab is None else int(lab)) for k, s, r, lab in rows],
            )
            db.execute("COMMIT")

    def set_grade(self, grader: str, item: str, grade: int) -> None:
        """Store ``grader``'s grade of ``item``, replacing their earlier one."""
        grader = check_grader(grader)
        if grade not in GRADES:
            raise UsageError(f"grade {grade!r} is not one of {sorted(GRADES)}", key="grade")
        with self._connect() as db:
            known = db.execute("SELECT 1 FROM items WHERE item = ?", (item,)).fetchone()
            if known is None:
                raise UsageError(f"unknown item {item!r}", key="item")
            db.execute(
                "INSERT INTO grades VALUES (?, ?, ?, ?) ON CONFLICT (grader, item) DO UPDATE "
                "SET grade = excluded.grade, graded_at = excluded.graded_at",
                (grader, item, int(grade), time.time()),
            )

    def grades_of(self, grader: str, items: Iterable[str] | None = None) -> dict[str, int]:
        """``{item: grade}`` of one grader (restricted to ``items`` when given)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT item, grade FROM grades WHERE grader = ?", (grader,)
            ).fetchall()
        out = dict(rows)
        if items is not None:
            wanted = set(items)
            out = {k: v for k, v in out.items() if k in wanted}
        return out

    def all_grades(self) -> list[dict]:
        """Every grade joined with its item: grader, item, simulated, ref, label, grade,
        graded_at (Unix seconds)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT g.grader, g.item, i.simulated, i.ref, i.label, g.grade, g.graded_at "
                "FROM grades g JOIN items i USING (item) ORDER BY g.item, g.grader"
            ).fetchall()
        return [dict(r) for r in rows]


def check_grader(name: str) -> str:
    """A grader's name, stripped; 1-40 printable characters."""
    name = (name or "").strip()
    if not 0 < len(name) <= 40 or not name.isprintable():
        raise UsageError("a grader name is 1 to 40 printable characters", key="grader")
    return name


def consensus_class(mean: float) -> str:
    """Class of a consensus grade: A (mean > 2.5), B (1.5 to 2.5), else C."""
    if mean > 2.5:
        return "A"
    if mean >= 1.5:
        return "B"
    return "C"


def consensus(grades: Iterable[Mapping], min_graders: int = MIN_GRADERS) -> list[dict]:
    """Mean grade of each real candidate graded by at least ``min_graders`` graders.

    Parameters
    ----------
    grades : iterable of mapping
        Rows of :meth:`GradeStore.all_grades`.
    min_graders : int

    Returns
    -------
    list of dict
        ``ref`` (the candidate id as text), ``mean_grade``, ``n_graders``, ``class``,
        sorted by decreasing mean grade.
    """
    by_item: dict[str, list[int]] = {}
    refs = {}
    for row in grades:
        if row["simulated"]:
            continue
        by_item.setdefault(row["item"], []).append(int(row["grade"]))
        refs[row["item"]] = row["ref"]
    out = []
    for item, values in by_item.items():
        if len(values) >= min_graders:
            mean = float(np.mean(values))
            out.append(
                {
                    "ref": refs[item],
                    "mean_grade": mean,
                    "n_graders": len(values),
                    "class": consensus_class(mean),
                }
            )
    return sorted(out, key=lambda r: (-r["mean_grade"], r["ref"]))


def _rate(k: int, n: int) -> dict:
    return {"k": k, "n": n, "value": k / n if n else None, "ci95": wilson_interval(k, n)}


def grader_stats(grades: Iterable[Mapping], found: int = FOUND_GRADE) -> dict:
    """Each grader's completeness and purity on the simulated stamps mixed into the page.

    Completeness: the fraction of simulated lenses they graded ``>= found``.  Purity: among
    the simulated stamps they graded ``>= found``, the fraction that are lenses.  Both with
    Wilson 95% intervals and their counts.

    Returns
    -------
    dict
        ``{"found_grade": found, "graders": {name: {"simulated_graded", "completeness",
        "purity"}}}``; each rate is ``{"k", "n", "value", "ci95"}`` (value and interval None
        when ``n`` is 0).
    """
    per: dict[str, list[tuple[int, int]]] = {}
    everyone = set()
    for row in grades:
        everyone.add(row["grader"])
        if row["simulated"]:
            per.setdefault(row["grader"], []).append((int(row["label"]), int(row["grade"])))
    out = {}
    for grader in sorted(everyone):
        pairs = per.get(grader, [])
        labels = np.array([p[0] for p in pairs], dtype=int)
        flagged = np.array([p[1] >= found for p in pairs], dtype=bool)
        lenses = labels == 1
        out[grader] = {
            "simulated_graded": len(pairs),
            "completeness": _rate(int((flagged & lenses).sum()), int(lenses.sum())),
            "purity": _rate(int((flagged & lenses).sum()), int(flagged.sum())),
        }
    return {"found_grade": found, "graders": out}
