"""Frozen config dataclasses as command-line flags: every field ``name`` becomes ``--name``.

Field metadata may give ``help``, ``aliases`` (extra long flags, e.g. ``fast`` for ``global_only``),
``short`` (e.g. ``-i``), ``type`` (the flag's parser, for a field given as one string), ``nargs`` (a fixed
count for a list field) and ``same_results`` (a speed or memory setting that does not change results: a
resumed folder may change it). Types come from the annotations:
``bool`` is ``--x/--no-x``, ``list[T]`` takes several values, ``dict`` takes JSON, ``T | None`` takes T.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any


def _json_mapping(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f'not JSON: {text!r} ({e})') from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object such as {{"gf_radius": 6}}, got {text!r}')
    return value


def _scalar(kind: Any) -> Any:
    """The argparse ``type`` of an annotation (``int | None`` -> int)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    if kind is int:
        return lambda s: int(float(s)) if 'e' in s.lower() else int(s)  # the authors write 4.5e4
    return kind


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                        defaults: dict[str, Any] | None = None, suppress: bool = False) -> None:
    """Add one flag per field of dataclass ``cls`` (except ``skip``); ``defaults`` override the class's.
    ``suppress``: flags not given are absent from the parsed namespace (to tell what the user set)."""
    hints = typing.get_type_hints(cls)
    instance_defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                         for f in dataclasses.fields(cls)
                         if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
    instance_defaults.update(defaults or {})
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        meta, kind = f.metadata, hints[f.name]
        flags = ([meta['short']] if 'short' in meta else []) + [f'--{f.name}'] + [f'--{a}' for a in meta.get('aliases', ())]
        kw: dict[str, Any] = {'default': argparse.SUPPRESS if suppress else instance_defaults.get(f.name),
                              'help': meta.get('help'), 'dest': f.name}
        origin = typing.get_origin(kind)
        if 'type' in meta:  # a field parsed from one string (e.g. MagNet's '612-612,1224-1224')
            kw['type'] = meta['type']
        elif kind is bool:
            kw['action'] = argparse.BooleanOptionalAction
        elif origin is list:
            kw.update(nargs=meta.get('nargs', '*'), type=_scalar(typing.get_args(kind)[0]))
        elif origin is dict or kind is dict:
            kw['type'] = _json_mapping
        else:
            kw['type'] = _scalar(kind)
        parser.add_argument(*flags, **kw)


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls`` from the flags :func:`add_dataclass_flags` added (others are ignored)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def dataclass_from_dict(cls: type, data: dict[str, Any], source: str = 'config') -> Any:
    """An instance of ``cls`` from a saved dict; keys that ``cls`` does not know are an error naming them."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f'{source}: unknown key(s) {", ".join(unknown)} for {cls.__name__} '
                         f'(known: {", ".join(sorted(names))})')
    return cls(**data)
