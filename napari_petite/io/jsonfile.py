"""Reading the JSON files a user can hand us (cards, sidecars, profiles, run records) safely.

A JSON file is data from outside: it can be truncated, not UTF-8, huge, nested thousands of
levels deep (Python's parser then raises ``RecursionError``, not a JSON error) or of the wrong
shape. :func:`read_json` turns every one of those into one sentence of the error class the
caller names, so no reader of the package has its own partial list of exceptions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from napari_petite.errors import InputError, PetiteError

#: larger than any card, sidecar or profile the tool writes (a few hundred KB at most)
MAX_BYTES = 64 << 20


def parse_json(text: str, *, what: str, error: type[PetiteError] = InputError,
               hint: str = "fix or remove it", expect: type | None = dict) -> Any:
    """Parse ``text`` (the content of ``what``), refusing every malformed case in a sentence."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{what} is not valid JSON ({err}); {hint}.") from None
    except RecursionError:
        raise error(f"{what} nests its JSON too deeply to be read; {hint}.") from None
    except ValueError as err:  # e.g. integers with too many digits
        raise error(f"{what} cannot be read as JSON ({err}); {hint}.") from None
    if expect is not None and not isinstance(value, expect):
        raise error(f"{what} must hold a JSON {_kind(expect)}, not {_kind(type(value))}; "
                    f"{hint}.")
    return value


def read_json(path: str | os.PathLike, *, what: str | None = None,
              error: type[PetiteError] = InputError, hint: str = "fix or remove it",
              expect: type | None = dict) -> Any:
    """Read and parse the JSON file ``path`` (``what`` names it in messages)."""
    path = Path(path)
    what = what or str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{what} is {path.stat().st_size >> 20} MB, far larger than a JSON "
                        f"file of this tool can be; {hint}.")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not UTF-8 text; {hint}.") from None
    except OSError as err:
        raise error(f"{what} cannot be read ({err.strerror or err}); {hint}.") from None
    return parse_json(text, what=what, error=error, hint=hint, expect=expect)


def _kind(kind: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            bool: "true/false", type(None): "null"}.get(kind, kind.__name__)
