"""Latent sets: codes stored once (sampled with a seed, sent as JSON, or uploaded as ``.npy``)
and referenced by jobs as ``{"set": id}``."""

from __future__ import annotations

import io
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from api.auth import ReadPrincipal, SubmitPrincipal
from api.codes import check_codes, parse_npy_codes, read_upload
from api.deps import ensure_model_served, get_settings, get_store
from api.errors import ApiProblem
from api.params import LatentSetIdPath
from api.routes.jobs import PROBLEM_RESPONSES
from api.schemas import LatentSetList, LatentSetView, latent_set_view, page_of
from services.patterns import TEXT_PATTERN, Seed
from services.pipeline.cache import cached_generator
from services.store import LatentSetRecord

router = APIRouter(tags=["latent sets"])


class LatentSetCreate(BaseModel):
    """Either ``model`` + ``count`` (+ ``seed``) to sample, or ``values`` to store as given."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200, pattern=TEXT_PATTERN)
    model: str | None = Field(default=None, min_length=1, max_length=200, pattern=TEXT_PATTERN)
    count: int | None = Field(default=None, ge=1)
    seed: Seed = 0
    values: list[list[FiniteFloat]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> LatentSetCreate:
        if (self.values is None) == (self.count is None):
            raise ValueError(
                'give either "values" or "model" and "count" (with an optional "seed")'
            )
        if self.count is not None and self.model is None:
            raise ValueError('sampling needs "model" to know the latent distribution')
        if self.values is not None and len({len(row) for row in self.values}) != 1:
            raise ValueError("every code in values must have the same length")
        return self


def _created(record: LatentSetRecord, status: int = 201) -> JSONResponse:
    view = latent_set_view(record)
    return JSONResponse(
        view.model_dump(mode="json"), status_code=status, headers={"Location": view.links["self"]}
    )


@router.post(
    "/latent-sets",
    status_code=201,
    response_model=LatentSetView,
    responses=PROBLEM_RESPONSES,
    summary="Create a latent set by sampling (model, count, seed) or from JSON values",
)
def create_latent_set(
    request: Request,
    body: LatentSetCreate,
    principal: SubmitPrincipal,
) -> JSONResponse:
    settings = get_settings(request)
    store = get_store(request)
    if body.values is not None:
        codes = check_codes(np.asarray(body.values, dtype=np.float64), settings, "values")
        record = store.create_latent_set(principal.owner, codes, name=body.name, source="uploaded")
        return _created(record)
    assert body.count is not None and body.model is not None
    if body.count > settings.max_latents_per_job:
        raise ApiProblem(
            422,
            "Too many latent codes",
            f"{body.count} codes exceed the limit of {settings.max_latents_per_job} "
            "(SPECTRA_MAX_LATENTS_PER_JOB)",
            field="count",
            slug="too-many-latents",
        )
    ensure_model_served(body.model, settings)
    generator = cached_generator(body.model, "cpu")  # UnknownModelError -> 422 on "model"
    codes = check_codes(np.asarray(generator.sample(body.count, body.seed)), settings, "count")
    record = store.create_latent_set(
        principal.owner, codes, name=body.name, source="sampled", model=body.model, seed=body.seed
    )
    return _created(record)


@router.post(
    "/latent-sets/upload",
    status_code=201,
    response_model=LatentSetView,
    responses=PROBLEM_RESPONSES,
    summary="Create a latent set from a .npy upload of shape (n, d)",
)
def upload_latent_set(
    request: Request,
    principal: SubmitPrincipal,
    file: Annotated[UploadFile, File(description=".npy array of codes, shape (n, d)")],
    name: Annotated[str | None, Form(max_length=200, pattern=TEXT_PATTERN)] = None,
) -> JSONResponse:
    settings = get_settings(request)
    codes = check_codes(
        parse_npy_codes(read_upload(file, settings.max_upload_bytes), settings), settings, "file"
    )
    record = get_store(request).create_latent_set(
        principal.owner, codes, name=name, source="uploaded"
    )
    return _created(record)


@router.get("/latent-sets", response_model=LatentSetList, responses=PROBLEM_RESPONSES)
def list_latent_sets(
    request: Request,
    principal: ReadPrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> LatentSetList:
    records = get_store(request).list_latent_sets(principal.owner, limit=limit, offset=offset)
    return LatentSetList(
        items=[latent_set_view(r) for r in records], page=page_of(records, limit, offset)
    )


@router.get("/latent-sets/{set_id}", response_model=LatentSetView, responses=PROBLEM_RESPONSES)
def get_latent_set(
    request: Request,
    set_id: LatentSetIdPath,
    principal: ReadPrincipal,
) -> LatentSetView:
    return latent_set_view(get_store(request).get_latent_set(set_id, owner=principal.visible_owner))


@router.get(
    "/latent-sets/{set_id}/codes.npy",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **PROBLEM_RESPONSES},
    summary="Download the codes as a float64 .npy array (n, d)",
)
def download_latent_set(
    request: Request,
    set_id: LatentSetIdPath,
    principal: ReadPrincipal,
) -> Response:
    store = get_store(request)
    record = store.get_latent_set(set_id, owner=principal.visible_owner)
    buffer = io.BytesIO()
    np.save(buffer, store.latent_codes(record.id), allow_pickle=False)
    return Response(
        buffer.getvalue(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{record.id}.npy"'},
    )
