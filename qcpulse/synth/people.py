"""Synthetic patients with plausible Chinese names.

Names matter more than they seem: ingest stores and echoes UTF-8 text, indexes it
and renders it in alerts, and a feed of ASCII placeholders would never reveal an
encoding or collation bug. Surnames follow the rough frequency of the 2020 census
(王, 李, 张, 刘, 陈 cover ~30 %); given names are one or two characters. Nothing is
derived from real people: identifiers are sequential and no 身份证号 or phone number
is generated, so a synthetic record can never match a real person's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from random import Random
from typing import Any, Literal

from qcpulse.synth.codes import IDENTIFIER_TYPE

Gender = Literal["male", "female"]

_SURNAMES: tuple[tuple[str, int], ...] = (
    ("王", 74), ("李", 72), ("张", 69), ("刘", 55), ("陈", 49), ("杨", 33), ("黄", 26),
    ("赵", 22), ("吴", 21), ("周", 20), ("徐", 16), ("孙", 15), ("马", 15), ("朱", 14),
    ("胡", 13), ("郭", 12), ("何", 12), ("林", 11), ("高", 11), ("罗", 11), ("郑", 10),
    ("梁", 9), ("谢", 8), ("宋", 7), ("唐", 7), ("许", 7), ("韩", 7), ("邓", 7),
    ("冯", 7), ("曹", 6), ("彭", 6), ("曾", 6), ("肖", 6), ("田", 5), ("董", 5),
    ("潘", 5), ("袁", 5), ("蔡", 5), ("蒋", 5), ("余", 5), ("于", 5), ("杜", 4),
    ("叶", 4), ("程", 4), ("魏", 4), ("苏", 4), ("吕", 4), ("丁", 4), ("任", 4),
    ("卢", 4), ("姚", 4), ("沈", 4), ("钟", 4), ("姜", 3), ("崔", 3), ("谭", 3),
    ("陆", 3), ("范", 3), ("汪", 3), ("廖", 3), ("石", 3), ("金", 3), ("贾", 3),
    ("欧阳", 1), ("司马", 1), ("诸葛", 1),
)  # fmt: skip
_SURNAME_LIST = tuple(s for s, _ in _SURNAMES)
_SURNAME_CUM: tuple[int, ...] = tuple(
    sum(w for _, w in _SURNAMES[: i + 1]) for i in range(len(_SURNAMES))
)

_GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆建国志文博东晨阳林峰"
_GIVEN_FEMALE = "芳娜敏静丽艳娟霞燕玲桂英秀兰萍红梅琳雪婷颖佳欣怡慧倩洁琴云莉"
_GIVEN_NEUTRAL = "子一思嘉晓雨天海春秋安宁心书君"

_DISTRICTS = (
    ("上海市", "徐汇区"), ("上海市", "浦东新区"), ("上海市", "闵行区"),
    ("上海市", "黄浦区"), ("上海市", "静安区"), ("江苏省苏州市", "昆山市"),
    ("浙江省嘉兴市", "南湖区"), ("安徽省合肥市", "蜀山区"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Person:
    """A patient as the HIS master index knows them."""

    patient_id: str
    mrn: str
    family: str
    given: str
    gender: Gender
    birth_date: date
    province_city: str
    district: str

    @property
    def full_name(self) -> str:
        return self.family + self.given

    def age_on(self, day: date) -> int:
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


def _pick_surname(rng: Random) -> str:
    x = rng.random() * _SURNAME_CUM[-1]
    lo, hi = 0, len(_SURNAME_CUM) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _SURNAME_CUM[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return _SURNAME_LIST[lo]


def _given_name(rng: Random, gender: Gender) -> str:
    pool = _GIVEN_MALE if gender == "male" else _GIVEN_FEMALE
    first = rng.choice(pool if rng.random() < 0.7 else _GIVEN_NEUTRAL)
    if rng.random() < 0.25:
        return first
    return first + rng.choice(pool)


def make_person(
    rng: Random, *, tenant: str, number: int, age: int, on: date, male_share: float = 0.5
) -> Person:
    """A new patient aged ``age`` on ``on``; ``number`` makes the id and 病案号."""
    gender: Gender = "male" if rng.random() < male_share else "female"
    birth = on - timedelta(days=age * 365 + rng.randrange(365))
    city, district = rng.choice(_DISTRICTS)
    return Person(
        patient_id=f"{tenant}-pat-{number:06d}",
        mrn=f"{20_000_000 + number:08d}",
        family=_pick_surname(rng),
        given=_given_name(rng, gender),
        gender=gender,
        birth_date=birth,
        province_city=city,
        district=district,
    )


def patient_resource(person: Person, *, mrn_system: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": person.patient_id,
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}], "text": "病案号"},
                "system": mrn_system,
                "value": person.mrn,
            }
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "text": person.full_name,
                "family": person.family,
                "given": [person.given],
            }
        ],
        "gender": person.gender,
        "birthDate": person.birth_date.isoformat(),
        "address": [
            {
                "use": "home",
                "text": person.province_city + person.district,
                "city": person.province_city,
                "district": person.district,
                "country": "CN",
            }
        ],
    }
