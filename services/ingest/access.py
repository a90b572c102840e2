"""Department limits on patient-level FHIR data (docs/API.md §1, "Department-limited keys").

A key limited to departments reads a stored resource only when it belongs to one of
them:

- an ``Encounter`` by its episode's department (``serviceProvider``);
- a ``Patient`` when the patient has at least one episode in an allowed department;
- any other resource by the episode of the encounter its clinical fact is linked to
  (``clinical_facts.encounter_id``; a member of a chain is its own episode's department).

A resource linked to no episode (an Organization, an unlinked fact, a type that is
not mapped) is visible to unlimited keys only. Everything hidden is answered as absent
(404), as another tenant's resource is: a limited key learns nothing of its existence.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.ingest.models import EpisodeRow, FactRow


def visible(
    session: Session,
    tenant_id: str,
    departments: Collection[str] | None,
    rtype: str,
    rid: str,
) -> bool:
    """Whether a key limited to ``departments`` (None: all) may read ``rtype/rid``."""
    if departments is None:
        return True
    allowed = sorted(departments)
    in_department = (EpisodeRow.tenant_id == tenant_id, EpisodeRow.department.in_(allowed))
    if rtype == "Encounter":
        stmt = sa.select(sa.literal(1)).where(*in_department, EpisodeRow.encounter_id == rid)
    elif rtype == "Patient":
        stmt = sa.select(sa.literal(1)).where(*in_department, EpisodeRow.patient_id == rid)
    else:
        stmt = (
            sa.select(sa.literal(1))
            .select_from(FactRow)
            .join(
                EpisodeRow,
                sa.and_(
                    EpisodeRow.tenant_id == FactRow.tenant_id,
                    EpisodeRow.encounter_id == FactRow.encounter_id,
                ),
            )
            .where(
                FactRow.tenant_id == tenant_id,
                FactRow.resource_type == rtype,
                FactRow.resource_id == rid,
                EpisodeRow.department.in_(allowed),
            )
        )
    return session.scalar(stmt.limit(1)) is not None
