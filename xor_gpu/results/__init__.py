"""What every command produces, typed, and the one place that knows every report schema.

The package itself: the schema names, reading a report file (ConfigError, one line, for
anything that is not one of ours), and JsonObject, the JSON objects as dataclasses that keep
what other releases wrote. Each result's JSON is its to_dict(), written by xor_gpu.files. The
schemas are those of README.md; fields are only ever added (tests/data holds reports of
earlier releases, which must keep loading and be written back as they were). Its modules:

- train_report: the train report and `train --seeds`' report, read by attribute
- runs: a training run, its difference to a reference, the tolerances
- parity, sweep, check: the results of `parity`, `parity --seeds` and `check`
- doctor, compile_only: doctor's findings (and the NVIDIA libraries chosen), `doctor
  --compile-only`'s report
- fleet: `compare` reading each report as a node and its runs; rows, nodes, alike ones grouped

Each module is imported by name (from xor_gpu.results.runs import Difference); the package
imports none of them, and they import nothing of xor_gpu beyond errors, problem and devices:
no engine, no backend.
"""
import dataclasses
import json
import typing

from xor_gpu.errors import ConfigError


TRAIN_SCHEMA = "xor_gpu.train/1"
SEEDS_SCHEMA = "xor_gpu.train-seeds/1"  # train --seeds: one train report per seed
PARITY_SCHEMA = "xor_gpu.parity/1"
SWEEP_SCHEMA = "xor_gpu.parity-seeds/1"  # parity --seeds: the matrix of seeds and devices
CHECK_SCHEMA = "xor_gpu.check/1"
COMPILE_ONLY_SCHEMA = "xor_gpu.compile-only/1"  # doctor --compile-only: not a run (compare refuses it)
ERROR_SCHEMA = "xor_gpu.error/1"  # a child process's error (xor_gpu.child)
COMPARE_SCHEMA = "xor_gpu.compare/1"
RUN_SCHEMAS = (TRAIN_SCHEMA, PARITY_SCHEMA, CHECK_SCHEMA)  # what compare reads


def load(path):
    """A report file as a dict; ConfigError (one line) for anything that is not one of ours."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else 'not text'}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        # Cut short (a copy or a write that stopped): the parser ran out of text, or a JSON
        # object or array never closes (a number cut as "1e" fails one character before the end).
        body = text.strip()
        truncated = body and (getattr(exc, "pos", 0) >= len(text.rstrip())
                              or body[0] in "{[" and body[-1] not in "}]")
        raise ConfigError(f"{path}: {'truncated JSON' if truncated else 'not JSON'} ({exc})") from None
    except RecursionError:  # Python's parser gives up past about a thousand levels
        raise ConfigError(f"{path}: not an xor_gpu report (JSON nested too deeply)") from None
    if not isinstance(data, dict) or "schema" not in data:
        raise ConfigError(f"{path}: not an xor_gpu report (no schema)")
    return data


def plain(value):
    """value with every result object in it as its JSON dict."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@dataclasses.dataclass
class JsonObject:
    """A JSON object as a dataclass: a subclass declares the object's keys as its fields, in
    the object's order, each with a default, and is made by name. A field typed as a result
    (a class with from_dict), or as a list or dict of one (list[Step], dict[str, Library]), is
    read as one; a field with init=False is derived (computed in __post_init__, written in its
    place); an optional() field is left out while it is None; a named() one has a key of its
    own. What a report of another release holds beyond them is kept, so that it is written back
    as it was read: `extra`, the keys this version does not know (written after the fields),
    and `absent`, the fields that an earlier release did not write yet, or that this one leaves
    out of a record (made with absent={...})."""
    extra: dict = dataclasses.field(default_factory=dict, kw_only=True, repr=False)
    absent: frozenset = dataclasses.field(default=frozenset(), kw_only=True, repr=False, compare=False)

    @classmethod
    def json_fields(cls):
        return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "absent")]

    @classmethod
    def from_dict(cls, data):
        fields = cls.json_fields()
        known = {key(f) for f in fields}
        return cls(**{f.name: _read(f.type, data[key(f)]) for f in fields if f.init and key(f) in data},
                   extra={k: v for k, v in data.items() if k not in known},
                   absent=frozenset(f.name for f in fields if key(f) not in data))

    def to_dict(self):
        return {**{key(f): plain(getattr(self, f.name)) for f in self.json_fields() if f.name not in self.absent
                   and not (f.metadata.get("optional") and getattr(self, f.name) is None)}, **plain(self.extra)}


def optional():
    """A JsonObject field written only when it holds a value (no release writes it as null)."""
    return dataclasses.field(default=None, metadata={"optional": True})


def named(json_key):
    """A JsonObject field whose key in JSON is not its name (`from`, a Python keyword)."""
    return dataclasses.field(default=None, metadata={"key": json_key})


def key(field):
    """The JSON key of a JsonObject field."""
    return field.metadata.get("key", field.name)


@dataclasses.dataclass
class ErrorReport(JsonObject):
    """What a child process of the package's leaves when it fails (xor_gpu.child): the exit
    status it ends with, the error's type and its one-line message."""
    schema: str = ERROR_SCHEMA
    exit_status: int = None
    type: str = None
    message: str = None


def _read(kind, value):
    """`value` as read from JSON into a field of type `kind`."""
    if value is None:
        return None
    args = typing.get_args(kind)
    if typing.get_origin(kind) is list:
        return [_read(args[0], v) for v in value]
    if typing.get_origin(kind) is dict:
        return {k: _read(args[1], v) for k, v in value.items()}
    return kind.from_dict(value) if hasattr(kind, "from_dict") else value
