"""Locust's CSV outputs (``stats_stats.csv``, ``stats_stats_history.csv``, ``stats_failures.csv``),
read one way for the whole wing: one dict per row, keyed by the header's columns, each value as
Locust wrote it (a string; "N/A" where it had none). A file Locust still writes can be read by its
tail, without the line being written."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

Row = dict[str, str]
HISTORY = "stats_stats_history.csv"  # --csv-full-history: every endpoint's figures each second


def rows(path: Path, tail: int | None = None) -> list[Row]:
    """The file's rows; with ``tail``, only the complete rows in its last ``tail`` bytes (a soak
    run's history grows for half an hour). Raises OSError when the file cannot be read."""
    with path.open("rb") as f:
        header = f.readline()
        body = f.tell()
        if tail is None:
            chunk = f.read()
        else:
            start = max(body, os.fstat(f.fileno()).st_size - tail)
            f.seek(max(body, start - 1))
            chunk = f.read()
            if start > body:  # the cut fell inside a line, or just after one: drop what is before it
                chunk = chunk[chunk.find(b"\n") + 1 :]
            chunk = chunk[: chunk.rfind(b"\n") + 1]  # a line being written is read next time
    columns = next(csv.reader([header.decode(errors="replace")]), [])
    text = io.StringIO(chunk.decode(errors="replace"), newline="")
    return list(csv.DictReader(text, fieldnames=columns))
