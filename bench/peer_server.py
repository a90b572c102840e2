"""fhirstarter's minimal in-memory example, widened to the resource types the benchmark
sends: ``update`` (PUT) stores the validated resource in a dict, as the example's
``patient_update`` does (but creates when absent, as PUT-as-create does in qcpulse).

Runs in its own virtualenv (fhirstarter pins another FastAPI than qcpulse):
``python peer_server.py PORT Type1,Type2,…`` with ``FHIR_SEQUENCE=R4B``.
"""

import importlib
import sys

import uvicorn
from fhirstarter import FHIRProvider, FHIRStarter, InteractionContext

DATABASE: dict[str, dict[str, str]] = {}


def make_update(cls):  # type: ignore[no-untyped-def]
    async def update(context, id_, resource):  # type: ignore[no-untyped-def]
        DATABASE.setdefault(cls.__name__, {})[id_] = resource.model_dump_json()
        return id_

    update.__annotations__ = {
        "context": InteractionContext,
        "id_": str,
        "resource": cls,
        "return": str,
    }
    update.__name__ = f"{cls.__name__.lower()}_update"
    return update


def main() -> None:
    port, types = int(sys.argv[1]), sys.argv[2].split(",")
    app = FHIRStarter()
    provider = FHIRProvider()
    for name in types:
        module = importlib.import_module(f"fhir.resources.R4B.{name.lower()}")
        provider.update(getattr(module, name))(make_update(getattr(module, name)))
    app.add_providers(provider)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
