"""The report schemas, and reading a report file: ConfigError (one line) for anything that
is not one of ours. Each result's JSON is its to_dict(), written by xor_gpu.files.

The schemas are those of README.md; fields are only ever added (tests/data holds reports of
earlier releases, which must keep loading).
"""
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
