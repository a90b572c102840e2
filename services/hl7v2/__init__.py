"""HL7 v2: an adapter at the ingest edge. MLLP (or ``POST /hl7v2``) → parse → map
to one FHIR transaction → ingest's write path, with a message log of its own
(docs/HL7V2.md).

Other packages may import only what is listed here.
"""

from services.hl7v2.mllp import MllpListener
from services.hl7v2.router import api_router, router
from services.hl7v2.service import Answer, Replayed, receive, replay

__all__ = ["Answer", "MllpListener", "Replayed", "api_router", "receive", "replay", "router"]
