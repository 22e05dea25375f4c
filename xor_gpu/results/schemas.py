"""The report schemas, reading a report file (ConfigError, one line, for anything that is not
one of ours), and JSON objects as dataclasses. Each result's JSON is its to_dict(), written
by xor_gpu.files.

The schemas are those of README.md; fields are only ever added (tests/data holds reports of
earlier releases, which must keep loading and be written back as they were).
"""
import dataclasses
import json

from xor_gpu.errors import ConfigError


TRAIN_SCHEMA = "xor_gpu.train/1"
SEEDS_SCHEMA = "xor_gpu.train-seeds/1"  # train --seeds: one train report per seed
PARITY_SCHEMA = "xor_gpu.parity/1"
SWEEP_SCHEMA = "xor_gpu.parity-seeds/1"  # parity --seeds: the matrix of seeds and devices
CHECK_SCHEMA = "xor_gpu.check/1"
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
    the object's order, each with a default; a field whose type is a JsonObject is read as
    one. What a report of another release holds beyond them is kept, so that it is written
    back as it was read: `extra`, the keys this version does not know (written after the
    fields), and `absent`, the fields that an earlier release did not write yet."""
    extra: dict = dataclasses.field(default_factory=dict, kw_only=True, repr=False)
    absent: frozenset = dataclasses.field(default=frozenset(), kw_only=True, repr=False, compare=False)

    @classmethod
    def json_fields(cls):
        return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "absent")]

    @classmethod
    def from_dict(cls, data):
        fields = cls.json_fields()
        known = {f.name for f in fields}
        return cls(**{f.name: f.type.from_dict(data[f.name]) if _nested(f.type) and data[f.name] is not None
                      else data[f.name] for f in fields if f.name in data},
                   extra={k: v for k, v in data.items() if k not in known}, absent=frozenset(known - set(data)))

    def to_dict(self):
        return {**{f.name: plain(getattr(self, f.name)) for f in self.json_fields() if f.name not in self.absent},
                **self.extra}


def _nested(kind):
    return isinstance(kind, type) and issubclass(kind, JsonObject)
