"""Patterns and bounded types every edge checks before anything reaches the store: ids are
UUIDs, free text has no control characters (PostgreSQL text cannot even hold a NUL byte),
seeds are strict integers that fit a signed 64-bit column, tags have a documented length."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, StringConstraints

from services.model_catalogue import MODEL_SCHEMES

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Printable text only: names of models, distances and methods, labels.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"

# Seeds are stored as PostgreSQL bigint and seed torch's generators (signed 64-bit). Strict: a
# JSON ``false`` or ``"3"`` is refused, not read as a number.
MAX_SEED = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, strict=True)]
# A tag (campaigns): short printable text.
MAX_TAG_LENGTH = 100
Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH, pattern=TEXT_PATTERN)
]

# Model-name schemes whose loader reads a file named in the label: it runs (python:), unpickles
# (stylegan2-ada:) or deserialises it. Such a label is loaded only where whoever runs the
# process chose it: the operator's SPECTRA_EXTRA_MODELS for a server, the command line's own
# arguments; never because stored data (an imported job) carries it.
FILE_MODEL_SCHEMES = tuple(scheme.split(":")[0] + ":" for scheme in MODEL_SCHEMES)
# shuffled:SEED:BASE / shuffled-published:SEED:BASE / random-init:SEED:BASE
# (services.geometry.models.controls' CONTROL_KINDS, which needs torch; a test holds the two
# equal): a control loads its base model.
_CONTROL_PREFIX = re.compile(r"^(shuffled|shuffled-published|random-init):[^:]*:")


def names_a_file(model: str) -> bool:
    """True when loading ``model`` (or the base model of a control of it) reads a file."""
    return _CONTROL_PREFIX.sub("", model, count=1).startswith(FILE_MODEL_SCHEMES)
