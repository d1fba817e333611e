"""Where the data files PlanFit ships live (`mappings/`, `profiles/`), and the base every mapping file's
schema stands on: a pydantic model whose errors name the file and the JSON path of the field.

A source checkout or `pip install -e` reads the files at the repository root, where they are edited; a wheel
carries a copy in `server/_data/`, put there by the build (`setup.py`)."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Sequence, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

_PACKAGE = Path(__file__).resolve().parent


def data_directory(name: str) -> Path:
    """The shipped copy when this is an installed wheel, else the repository's own directory."""
    shipped = _PACKAGE / "_data" / name
    return shipped if shipped.is_dir() else _PACKAGE.parent / name


class MappingError(Exception):
    """A mapping file is missing, unreadable or invalid. The message names the file and the field."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file = file
        self.path = path
        self.detail = message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


class FieldProblem(Exception):
    """A check across fields failed (a duplicate, an unknown reference): raised from a file model's
    validators with the field's full JSON path, it reaches `read_mapping` unwrapped by pydantic."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def problem(message: str) -> PydanticCustomError:
    """A field validator's error, shown as written (pydantic would prefix a ValueError with 'Value error')."""
    return PydanticCustomError("mapping", "{detail}", {"detail": message})


def _json_number(value: Any) -> Any:
    # Strict decimals still accept JSON strings: a rate written "1250" is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise problem("Input should be a valid number")
    return Decimal(str(value))  # str: 575.1 stays 575.1, not its binary expansion


def matching(pattern: str, what: str) -> AfterValidator:
    """A string check whose error says what the value should be ('ny' is not a USPS state code)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(value):
            raise problem(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


NonEmptyStr = Annotated[str, Field(min_length=1, pattern=r"\S")]
JsonNumber = BeforeValidator(_json_number)  # use as Annotated[Decimal, JsonNumber]


class MappingModel(BaseModel):
    """Base of every part of a mapping file: unknown fields are refused, values are never coerced (a "70"
    is not a priority), and what is loaded cannot change."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Source(MappingModel):
    """Where a mapping file's content comes from (mappings/README.md): the document's name, its address
    when it has one, the day it was read, and what could not be confirmed in it."""

    name: NonEmptyStr
    url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None
    read: date
    unconfirmed: NonEmptyStr | None = None


class MappingFile(MappingModel):
    """Base of a whole mapping file: it names its sources (a file without them does not load)."""

    source: list[Source] = Field(min_length=1)


def json_path(loc: Sequence[int | str]) -> str:
    """pydantic's error location as a JSON path: ('products', 3, 'rate') → 'products[3].rate'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


Model = TypeVar("Model", bound=BaseModel)


def read_mapping(path: Path, model: type[Model], label: str, context: dict[str, Any] | None = None) -> Model:
    """Read and validate one file; any problem raises `MappingError` naming `label` and the JSON path."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MappingError(label, "", f"file not found ({path})") from None
    except OSError as exc:
        raise MappingError(label, "", f"cannot read file: {exc.strerror}") from None
    try:
        return model.model_validate_json(raw, context=context)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = json_path(error["loc"])
        if error["type"] == "model_type" and not where:
            raise MappingError(label, "(top level)", "Input should be an object") from None
        raise MappingError(label, where, error["msg"]) from None
    except FieldProblem as exc:
        raise MappingError(label, exc.path, exc.message) from None
