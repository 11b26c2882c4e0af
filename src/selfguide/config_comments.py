"""`selfguide config`: the resolved config as YAML with each setting's description as a comment,
so the printed file documents itself and still loads back unchanged."""

from __future__ import annotations

import textwrap

import yaml
from pydantic import BaseModel

WIDTH = 100


def commented_yaml(model: BaseModel, indent: int = 0) -> str:
    lines: list[str] = []
    pad = " " * indent
    dumped_fields = model.model_dump(mode="json")  # plain values: a list of models (datastore sources) included
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            for line in textwrap.wrap(field.description, WIDTH - indent - 2):
                lines.append(f"{pad}# {line}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.append(commented_yaml(value, indent + 2).rstrip("\n"))
        else:
            # A field left out of dumps at its default (train.num_processes) is still shown, with that default.
            plain = dumped_fields[name] if name in dumped_fields else value
            dumped = yaml.safe_dump(plain, default_flow_style=True, width=10**6, allow_unicode=True)
            lines.append(f"{pad}{name}: {dumped.strip().removesuffix('...').strip()}")
    return "\n".join(lines) + "\n"


def config_yaml_with_comments(config: BaseModel) -> str:
    """`config` as YAML, every field preceded by its description."""
    return commented_yaml(type(config).model_validate(config.model_dump(mode="json")))
