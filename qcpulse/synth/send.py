"""One bundle of the stream, labelled.

The label (episode, why it was sent) duplicates what the bundle says, on purpose:
replay tools pace and partition by it, and tests assert on engine behaviour
(retries, corrections, early data) without re-deriving it from FHIR content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Note = Literal[
    "directory",
    "initial",
    "update",
    "discharge",
    "resend",
    "correction",
    "retraction",
    "early",
]
"""Why a bundle was sent.

``directory``: the department Organizations, once at the start (episode ``""``).
``initial``: registration / admission (Patient, Encounter, admitting diagnosis).
``update``: care documented as it happens. ``discharge``: the Encounter finished.
``resend``: a byte-identical retry of the bundle sent just before it.
``correction``: a changed version of a resource already sent.
``retraction``: ``entered-in-error`` or a DELETE. ``early``: sent before the
bundle that carries its Encounter.
"""


@dataclass(frozen=True, slots=True)
class Send:
    """One bundle and when the engine sends it.

    ``at`` is UTC-aware simulated wall-clock time. ``bundle`` is a FHIR R4 Bundle
    of type ``transaction`` (a few ``batch``) owned by the receiver: no two sends
    share nested objects, so mutating one never alters another.
    """

    at: datetime
    bundle: dict[str, Any]
    episode: str
    note: Note
