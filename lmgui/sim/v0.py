"""LM Studio's v0 REST model endpoints: ``GET /api/v0/models`` and ``/api/v0/models/{id}``.

One row per model (``state`` ``not-loaded`` → ``loading`` → ``loaded``, ``loaded_context_length``
once loaded, a ``capabilities`` array such as ``["tool_use"]``); unloaded models only while JIT
loading is on. The id is a model key, URL-encoded or not (``qwen%2Fqwen3-4b`` and
``qwen/qwen3-4b`` both work: clients such as llm-lmstudio send the slash as it is). The v0
inference endpoints live in ``openai_compat.py``, whose bodies they share.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lmgui.sim.engine import guarded
from lmgui.sim.openai_compat import openai_not_found
from lmgui.sim.state import SimState

__all__ = ["V0Models"]


class V0Models:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route("/api/v0/models", self.list_models, methods=["GET"]),
            Route("/api/v0/models/{model:path}", guarded(self.model), methods=["GET"]),
        ]

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": self.state.list_models_v0(detail=True)})

    async def model(self, request: Request) -> Response:
        # Starlette hands the path decoded: %2F arrives as "/".
        model = request.path_params["model"]
        row = self.state.model_v0(model)
        if row is None:
            raise openai_not_found(self.state)(model)
        return JSONResponse(row)
