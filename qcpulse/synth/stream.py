"""The merged stream: every episode's bundles, in the order the engine sends them.

Episodes are charted one at a time, in arrival order, and their bundles wait in a
heap keyed by send time. Nothing an episode sends precedes its arrival, so once
the next arrival is known every bundle due before it can be released: memory
holds only the episodes still in progress, whatever the length of the run.

Determinism: the arrival process and patient re-use draw from one generator
seeded by ``(seed, tenant)``; each episode charts from its own generator seeded by
``(seed, tenant, episode number)``, so changing one pathway does not reshuffle the
others. String seeds hash with SHA-512 in CPython, independent of PYTHONHASHSEED.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import orjson

from qcpulse.synth.arrivals import arrivals
from qcpulse.synth.chart import Chart, directory_bundle
from qcpulse.synth.config import ACUTE_PATHWAYS, HospitalConfig, Pathway
from qcpulse.synth.pathways import SPECS, PathwaySpec
from qcpulse.synth.people import Person, make_person
from qcpulse.synth.send import Note, Send

_POOL_SIZE = 5000
#: Share of ED→ward chains whose ED visit reaches qcpulse after the ward stay (the ED
#: system exports its visits in batches).
LATE_ROOT_RATE = 0.3


@dataclass(slots=True)
class _Known:
    person: Person
    busy_until: datetime
    deceased: bool


class _Patients:
    """The master patient index: new patients, and some who come back."""

    def __init__(self, config: HospitalConfig, rng: Random) -> None:
        self._cfg = config
        self._rng = rng
        self._pool: list[_Known] = []
        self._next_slot = 0
        self._count = 0
        self._index: dict[str, int] = {}

    def pick(self, spec: PathwaySpec, arrival: datetime, episode_rng: Random) -> Person:
        rng = self._rng
        if self._pool and rng.random() < self._cfg.returning_patient_rate:
            known = self._pool[rng.randrange(len(self._pool))]
            lo, _, hi = spec.ages
            age = known.person.age_on(arrival.date())
            if not known.deceased and known.busy_until < arrival and lo <= age <= hi:
                return known.person
        self._count += 1
        lo, mode, hi = spec.ages
        age = round(episode_rng.triangular(lo, hi, mode))
        return make_person(
            episode_rng,
            tenant=self._cfg.tenant,
            number=self._count,
            age=age,
            on=arrival.date(),
            male_share=spec.male_share,
        )

    def record(self, person: Person, busy_until: datetime, deceased: bool) -> None:
        slot = self._index.get(person.patient_id)
        entry = _Known(person, busy_until, deceased)
        if slot is not None and self._pool[slot].person.patient_id == person.patient_id:
            self._pool[slot] = entry
            return
        if len(self._pool) < _POOL_SIZE:
            self._index[person.patient_id] = len(self._pool)
            self._pool.append(entry)
            return
        evicted = self._pool[self._next_slot]
        self._index.pop(evicted.person.patient_id, None)
        self._index[person.patient_id] = self._next_slot
        self._pool[self._next_slot] = entry
        self._next_slot = (self._next_slot + 1) % _POOL_SIZE


class _Mix:
    def __init__(self, config: HospitalConfig) -> None:
        self.acute = [(p, w) for p, w in config.mix if p in ACUTE_PATHWAYS and w > 0]
        self.elective = [(p, w) for p, w in config.mix if p not in ACUTE_PATHWAYS and w > 0]
        total = sum(w for _, w in config.mix)
        self.acute_share = sum(w for _, w in self.acute) / total

    def choose(self, rng: Random, acute: bool) -> Pathway:
        options = self.acute if acute else self.elective
        if not options:
            options = self.elective or self.acute
        pathways = [p for p, _ in options]
        weights = [w for _, w in options]
        return rng.choices(pathways, weights=weights)[0]


#: A send waiting in the heap: (at, episode number, index in episode, episode, note,
#: bundle as JSON). The first three are unique, so the rest is never compared. Bytes
#: are compact and invisible to the cyclic garbage collector, so a long run with
#: thousands of open episodes stays small and fast; decoding on release also gives
#: every Send its own dicts (charts share the Patient dict across bundles).
_Pending = tuple[datetime, int, int, str, Note, bytes]


def generate(config: HospitalConfig, *, start: datetime, days: float, seed: int) -> Iterator[Send]:
    """Every bundle of the episodes arriving in ``[start, start + days)``, by send time.

    Episodes are followed to discharge (and any late corrections) unless
    ``config.truncate`` cuts the stream at ``start + days``. Ties in send time are
    ordered by episode number, then by the episode's own order, so the output is a
    pure function of the arguments.
    """
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if days < 0:
        raise ValueError("days must not be negative")
    start = start.astimezone(UTC)
    end = start + timedelta(days=days)
    master = Random(f"qcpulse-synth/{seed}/{config.tenant}")
    mix = _Mix(config)
    patients = _Patients(config, master)
    heap: list[_Pending] = []
    if config.send_directory:
        yield Send(at=start, bundle=directory_bundle(config, start), episode="", note="directory")

    def release(until: datetime | None) -> Iterator[Send]:
        while heap and (until is None or heap[0][0] <= until):
            at, _, _, episode, note, blob = heapq.heappop(heap)
            if config.truncate and at >= end:
                heap.clear()
                return
            bundle: dict[str, Any] = orjson.loads(blob)
            yield Send(at=at, bundle=bundle, episode=episode, note=note)

    stream = arrivals(
        master,
        start=start,
        end=end,
        per_day=config.arrivals_per_day,
        acute_share=mix.acute_share,
        exact=config.episodes,
    )
    for number, arrival in enumerate(stream, start=1):
        yield from release(arrival.at)
        pathway = mix.choose(master, arrival.acute)
        spec = SPECS[pathway]
        rng = Random(f"qcpulse-synth/{seed}/{config.tenant}/{number}")
        person = patients.pick(spec, arrival.at, rng)
        _, role, encounter_class = rng.choices(
            spec.settings, weights=[w for w, _, _ in spec.settings]
        )[0]
        ward = None
        if spec.via_ed and encounter_class == "IMP" and rng.random() < spec.via_ed:
            ward = (config.department(role), encounter_class)
            role, encounter_class = "emergency", "EMER"
        chart = Chart(
            config=config,
            rng=rng,
            number=number,
            person=person,
            department=config.department(role),
            encounter_class=encounter_class,
            arrival=arrival.at,
        )
        if ward is not None:
            chart.ward = ward
            chart.late_root = rng.random() < LATE_ROOT_RATE
        spec.run(chart)
        sends = chart.finish()
        patients.record(person, chart.discharged_at or sends[-1].at, chart.deceased)
        for k, send in enumerate(sends):
            blob = orjson.dumps(send.bundle)
            heapq.heappush(heap, (send.at, number, k, send.episode, send.note, blob))
    yield from release(None)
