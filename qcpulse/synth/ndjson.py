"""The stream on disk: one send per line, so that a replay tool can post bundles as
it reads them and a run of millions of resources never has to fit in memory.

Lines are compact UTF-8 JSON with keys in a fixed order (Chinese text is not
\\u-escaped); the same sends always give the same bytes, which is what makes a
generated file a reproducible test fixture.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import IO, Any, cast, get_args

import orjson

from qcpulse.synth.send import Note, Send

_NOTES: frozenset[str] = frozenset(get_args(Note))


def _line(send: Send) -> bytes:
    record = {
        "at": send.at.isoformat(),
        "episode": send.episode,
        "note": send.note,
        "bundle": send.bundle,
    }
    return orjson.dumps(record) + b"\n"


def write_ndjson(
    sends: Iterable[Send],
    out: IO[str] | IO[bytes] | str | PathLike[str],
    progress: bool = False,
) -> int:
    """Write ``sends`` to a path or an open text/binary stream; returns the number of lines.

    With ``progress``, a running count of bundles and resources goes to stderr.
    """
    if isinstance(out, str | PathLike):
        with Path(out).open("wb") as fh:
            return _write(sends, fh, progress)
    return _write(sends, out, progress)


def _write(sends: Iterable[Send], out: IO[str] | IO[bytes], progress: bool) -> int:
    binary = _is_binary(out)
    count = 0
    resources = 0
    started = time.monotonic()
    last_report = started
    for send in sends:
        data = _line(send)
        if binary:
            cast(IO[bytes], out).write(data)
        else:
            cast(IO[str], out).write(data.decode("utf-8"))
        count += 1
        if progress:
            resources += len(send.bundle.get("entry", ()))
            now = time.monotonic()
            if now - last_report >= 1.0:
                last_report = now
                _report(count, resources, now - started, send.at)
    if progress:
        _report(count, resources, time.monotonic() - started, None)
        sys.stderr.write("\n")
    return count


def _is_binary(out: IO[str] | IO[bytes]) -> bool:
    mode = getattr(out, "mode", None)
    if isinstance(mode, str):
        return "b" in mode
    # io.BytesIO has no mode; io.StringIO neither, but it is a TextIOBase.
    return not isinstance(out, io.TextIOBase)


def _report(count: int, resources: int, elapsed: float, at: datetime | None) -> None:
    rate = resources / elapsed if elapsed > 0 else 0.0
    where = f" sim {at.isoformat(timespec='minutes')}" if at is not None else ""
    sys.stderr.write(f"\r{count:,} bundles, {resources:,} entries, {rate:,.0f} entries/s{where}   ")
    sys.stderr.flush()


def read_ndjson(path: str | PathLike[str] | IO[str] | IO[bytes]) -> Iterator[Send]:
    """Read what :func:`write_ndjson` wrote, lazily, one send per line."""
    if isinstance(path, str | PathLike):
        with Path(path).open("rb") as fh:
            yield from _read(fh)
    else:
        yield from _read(path)


def _read(lines: Iterable[str | bytes]) -> Iterator[Send]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = orjson.loads(line)
            at = datetime.fromisoformat(record["at"])
            note = record["note"]
            episode = record["episode"]
            bundle = record["bundle"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {number}: not a synthetic send: {exc}") from exc
        if note not in _NOTES or not isinstance(bundle, dict) or not isinstance(episode, str):
            raise ValueError(f"line {number}: not a synthetic send")
        if at.tzinfo is None:
            raise ValueError(f"line {number}: 'at' lacks an offset")
        yield Send(at=at, bundle=bundle, episode=episode, note=note)
