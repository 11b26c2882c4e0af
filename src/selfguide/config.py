"""RunConfig: every stage's settings in one typed object, read from YAML and `--set` overrides,
written back whole into each run folder so a run can always be repeated."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from selfguide.backends.model_config import ModelConfig
from selfguide.errors import BadInputError
from selfguide.io import describe, parse_structured, read_structured
from selfguide.eval.evaluate import EvalConfig
from selfguide.methods import DEFAULT_METHOD, MethodConfig, get_method, method_config
from selfguide.redact import redact_url
from selfguide.tasks.datasets import DatasetTaskConfig
from selfguide.tasks.spec import EvalSplit
from selfguide.train.config import TrainConfig


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str = Field("", description="A task file (ours or SuperNI JSON) or a SuperNI task name such as task036.")
    dataset: DatasetTaskConfig = Field(default_factory=DatasetTaskConfig, description="Columns, demos and splits when the task is a dataset (hf:NAME, a folder, a parquet file).")
    eval_split: EvalSplit | None = Field(None, description="SuperNI eval set: official (first 100), selfguide-test, selfguide-validation.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    teacher: ModelConfig | None = Field(None, description="A model that writes and labels the data instead of `model`, which is still the one finetuned and evaluated (distillation); unset: the model teaches itself.")
    # A union on `method`: the registry (selfguide.methods) holds every method's config class.
    synth: SerializeAsAny[MethodConfig] = Field(
        default_factory=lambda: method_config(None), description="How the training data is made: `method` names the method (default self-guide), the rest are its settings."
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    seed: int = Field(0, description="Seeds every sampling decision and training.")
    out: str = Field("", description="Run folder; unset: runs/<task name>.")
    cache: str | None = Field(None, description="SQLite file of cached model calls; unset: <out>/cache.sqlite. Share one between runs to reuse calls.")

    def training(self) -> TrainConfig:
        """`train` with its seed filled in: the run's `seed` unless `train.seed` is set."""
        return self.train.seeded(self.seed)

    @field_validator("synth", mode="before")
    @classmethod
    def _method_config(cls, value: object) -> MethodConfig:
        return method_config(value)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: dict | None = None,
    *,
    base: RunConfig | None = None,
    flags: dict[str, str] | None = None,
) -> RunConfig:
    """Defaults (or `base`), then the YAML file merged over them, then `values` (CLI flags), then
    `key.path=value` overrides. `flags` names the CLI flag of a `values` key, so an error in it
    blames that flag rather than the config file. A flag or override that changes `synth.method`
    starts the synth section afresh: the settings before it belong to the other method."""
    data: dict = base.model_dump(mode="json") if base is not None else {}
    source = "command line"
    if path is not None:
        source = str(path)
        loaded = read_structured(Path(path), "config file")
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise BadInputError(path, "top level", "a mapping of config sections (model, synth, train, eval, ...)", type(loaded).__name__)
        data = merge(data, loaded)
    origin: dict[str, str] = {}  # dotted key -> the flag or --set that gave it
    for dotted, value in (values or {}).items():
        if value is not None:
            set_setting(data, dotted, value)
            origin[dotted] = (flags or {}).get(dotted, "command line")
    parsed = []
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInputError("--set", describe(item), "key.path=value, e.g. synth.inputs.temperature=0.7")
        parsed.append((key.strip(), parse_value(key.strip(), raw)))
    keys = [key for key, _ in parsed]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated:
        raise BadInputError(f"--set {repeated}", "value", "each setting once", "given twice")
    # A method switch starts the synth section afresh, so it goes first: a `--set synth.x=...`
    # written before `--set synth.method=...` on the command line is kept, not dropped.
    for key, value in sorted(parsed, key=lambda item: item[0] != "synth.method"):
        set_setting(data, key, value)
        origin[key] = f"--set {key}"
    synth = data.get("synth")
    if isinstance(synth, dict) and "method" in synth:
        get_method(str(synth["method"]), origin.get("synth.method", source))  # an unknown name, named with its flag
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        got = describe(first.get("input")) if first["type"] != "extra_forbidden" else None
        if first["type"] == "extra_forbidden":
            expected = "a known setting (see `selfguide config`)"
        elif first["type"] == "value_error":  # a validator's own words, without pydantic's "Value error, "
            expected = str(first["ctx"]["error"])
        else:
            expected = first["msg"].lower()
        # The flag that set this field, a section above it, or a field inside it (an unknown section).
        given_by = next((flag for dotted, flag in origin.items() if where == dotted or where.startswith(dotted + ".") or dotted.startswith(where + ".")), source)
        raise BadInputError(given_by, f"field {describe(where)}", expected, got) from None


def merge(base: dict, update: dict) -> dict:
    """`update` laid over `base`, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_value(key: str, raw: str) -> object:
    """A --set value as YAML (numbers, booleans, lists); an empty value is the empty string."""
    if not raw.strip():
        return ""
    try:
        return parse_structured(raw, f"--set {key}", is_json=False)
    except BadInputError as err:
        raise BadInputError(f"--set {key}", describe(raw), "a YAML value (quote text with special characters)", err.got) from None


def set_setting(data: dict, dotted: str, value: object) -> None:
    synth = data.get("synth")
    if dotted == "synth.method" and value != (synth.get("method", DEFAULT_METHOD) if isinstance(synth, dict) else DEFAULT_METHOD):
        data["synth"] = {}
    set_dotted(data, dotted, value)


def set_dotted(data: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        if node.get(key) is None:  # an optional section that is unset (teacher) starts empty
            node[key] = {}
        child = node[key]
        if not isinstance(child, dict):
            raise BadInputError("--set", describe(dotted), f"{describe(key)} to be a section, not a value")
        node = child
    node[keys[-1]] = value


def config_yaml(config: RunConfig) -> str:
    """The config as YAML, with credentials in `model.base_url` and `teacher.base_url` redacted: it is written to disk."""
    data = config.model_dump(mode="json")
    for section in ("model", "teacher"):
        if (data.get(section) or {}).get("base_url"):
            data[section]["base_url"] = redact_url(data[section]["base_url"])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
