"""Command-line options generated from a dataclass: one option per field, typed by its
annotation, documented by its `help` metadata (`option`). The training CLI and
the experiments build their parsers with it, so options and settings never drift apart."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Collection
from typing import Any, Literal


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field whose help text becomes the command-line option's documentation."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def flag(name: str) -> str:
    """`field_name` -> `--field-name`."""
    return "--" + name.replace("_", "-")


def add_dataclass_options(
    group: argparse._ActionsContainer,
    cls: type,
    defaults: Any,
    skip: Collection[str] = (),
) -> None:
    """One option per field of `cls` (but `skip`), left out of the namespace unless given;
    `defaults` (an instance) supplies the default the help text shows."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = hints[f.name]
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name}
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
        if typing.get_origin(kind) is tuple:  # tuple[X, ...] or (X, X): several values
            kind = typing.get_args(kind)[0]
            kwargs["nargs"] = "+"
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kwargs["choices"] = typing.get_args(kind)
        else:
            kwargs["type"] = kind
            kwargs["metavar"] = f.name.upper()
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            default = " ".join(map(str, default))
        text = f.metadata.get("help", "")
        kwargs["help"] = text if "default:" in text else f"{text} (default: {default})"
        group.add_argument(flag(f.name), **kwargs)


def given_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` that the command line set (lists become tuples, as declared)."""
    given = vars(args)
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in names}
