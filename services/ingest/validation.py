"""Structural validation with fhir.resources (R4B models accept R4 payloads) and the
content hash that recognises identical re-sends."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

import orjson
from pydantic import ValidationError

from shared.errors import Issue

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@lru_cache(maxsize=256)
def model_class(resource_type: str) -> Any:
    """The R4B model for a type, or None when the type is unknown."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        return get_fhir_model_class(resource_type)
    except (ValueError, KeyError, AttributeError, ImportError):
        return None


def is_known_type(resource_type: str) -> bool:
    return model_class(resource_type) is not None


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


def content_hash(resource: dict[str, Any]) -> str:
    """SHA-256 of the resource without ``meta``, keys sorted: equal for identical content."""
    body = {k: v for k, v in resource.items() if k != "meta"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _expression(root: str, loc: tuple[int | str, ...]) -> str:
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-"):
            continue
        else:
            out += f".{part}"
    return out


def validate_resource(resource: Any, *, where: str = "") -> list[Issue]:
    """Issues for a resource that fails structural validation; empty when it is valid.

    ``where`` is the FHIRPath of the resource inside its container (``Bundle.entry[3].resource``).
    """
    if not isinstance(resource, dict):
        return [Issue("structure", "a resource must be a JSON object", (where or "$",))]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return [Issue("required", "resourceType is missing", (where or "$",))]
    cls = model_class(rtype)
    root = where or rtype
    if cls is None:
        return [
            Issue("not-supported", f"unknown resourceType '{rtype}'", (f"{root}.resourceType",))
        ]
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not valid_id(rid)):
        return [Issue("value", f"invalid id {rid!r}", (f"{root}.id",))]
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        return [
            Issue(
                "structure" if err["type"] in ("extra_forbidden", "missing") else "value",
                f"{rtype}: {err['msg']}",
                (_expression(root, tuple(err["loc"])),),
            )
            for err in exc.errors(include_url=False)[:20]
        ]
    except (ValueError, TypeError) as exc:
        return [Issue("value", f"{rtype}: {exc}", (root,))]
    return []


def json_depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return False
