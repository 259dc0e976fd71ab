"""The generator registry, with what workers recorded about each model (weights hash, ...)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import ReadPrincipal
from api.deps import get_settings, get_store
from api.routes.jobs import PROBLEM_RESPONSES
from api.schemas import ModelView
from services.geometry import list_models, list_schemes

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=list[ModelView],
    responses=PROBLEM_RESPONSES,
    summary="Built-in generators and every model jobs have used, with recorded facts",
)
def models(request: Request, principal: ReadPrincipal) -> list[ModelView]:
    recorded = {g.name: g for g in get_store(request).list_generators()}
    views = []
    for info in list_models():
        known = recorded.pop(info.name, None)
        facts = dict(known.options) if known else {}
        if known and known.weights_sha256:
            facts["weights_sha256"] = known.weights_sha256
        views.append(
            ModelView(
                name=info.name,
                family=info.family,
                latent_dim=info.latent_dim,
                description=info.description,
                spaces=list(info.spaces),
                layers=list(info.layers),
                facts=facts,
            )
        )
    # The schemes: how to name a model file (served only when the operator lists the file).
    for info in list_schemes():
        views.append(
            ModelView(
                name=info.name,
                family=info.family,
                latent_dim=None,
                description=info.description,
                spaces=list(info.spaces),
                layers=list(info.layers),
                scheme=True,
            )
        )
    # The operator's file-based models (SPECTRA_EXTRA_MODELS): served, whether used yet or not.
    for name in sorted(get_settings(request).extra_model_names):
        known = recorded.pop(name, None)
        facts = dict(known.options) if known else {}
        if known and known.weights_sha256:
            facts["weights_sha256"] = known.weights_sha256
        views.append(
            ModelView(
                name=name,
                family=known.family if known else "file",
                latent_dim=known.latent_dim if known else None,
                description="served (SPECTRA_EXTRA_MODELS)" + ("" if known else "; not loaded yet"),
                facts=facts,
            )
        )
    # Models loaded from files (torchscript:, python:, biggan-deep:, ...) appear once used.
    for name, known in sorted(recorded.items()):
        facts = dict(known.options)
        if known.weights_sha256:
            facts["weights_sha256"] = known.weights_sha256
        views.append(
            ModelView(
                name=name,
                family=known.family,
                latent_dim=known.latent_dim,
                description="recorded from a job",
                facts=facts,
            )
        )
    return views
