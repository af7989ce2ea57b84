"""``GET /v4/server-info``: what this server is and which providers it answers.

Why: front ends (the panel's provider list) should offer only what the server can serve; other
v4 servers answer 404 here, and the front ends then fall back to the wire's full list (spec §5).
"""
from __future__ import annotations

import pkgutil
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends

from .auth import require_api_key

router = APIRouter(dependencies=[Depends(require_api_key)])


@cache
def supported_providers() -> tuple[str, ...]:
    """The provider names ``get_provider`` serves, found in the registry itself (a module of the
    ``providers`` package per provider), so this list cannot drift from what a chat call accepts."""
    from . import providers
    from .providers.base import ProviderError

    names = []
    for module in pkgutil.iter_modules(providers.__path__):
        try:
            providers.get_provider(module.name)
        except ProviderError:
            continue  # helpers (base, upstream), not providers
        names.append(module.name)
    return tuple(names)


@router.get("/server-info", tags=["Server"])
def server_info() -> dict[str, Any]:
    """``{"providers": [...], "version": "..."}``: the providers chat calls may name, and the package version."""
    from .. import __version__

    return {"providers": list(supported_providers()), "version": __version__}
