"""Reading people's text files as they come: one decoder for every text input of the package (class lists, split
files, label files, CSV, JSON, descriptions, parameter sets; docs/errors.md "Text encodings").

UTF-8 with or without a byte-order mark, and CRLF or CR line ends, read as plain UTF-8 with `\\n`; a UTF-16 or
UTF-32 file is decoded when it starts with its byte-order mark. Anything else that is not UTF-8 is refused with
one line naming the file and the byte, and saying to save it as UTF-8. JSON objects with a key given twice are
refused naming the key (Python's reader would keep the last one silently).
"""
from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from typing import Any

from cezsar.errors import TextFileError

# longest first: the UTF-32 LE mark starts with the UTF-16 LE one
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode(data: bytes, where: str, error: type[Exception] = TextFileError) -> str:
    """`data` as text with `\\n` line ends (module doc); `error(message naming where)` when it is not text."""
    encoding, skip = "utf-8", 0
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, skip = name, len(bom)
            break
    try:
        text = data[skip:].decode(encoding)
    except UnicodeDecodeError as err:
        if encoding != "utf-8":  # a mark, then bytes that are not that encoding: a binary file, say as UTF-8
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as err8:
                err, skip = err8, 0
            encoding = "utf-8"
        raise error(f"{where}: not a UTF-8 text file ({err.reason} at byte {err.start + skip}); save it as UTF-8 "
                    "(UTF-16 is read only with its byte-order mark)") from None
    if "\x00" in text:  # UTF-16 without its mark decodes as UTF-8 with a NUL in every other place
        raise error(f"{where}: holds NUL bytes, not a UTF-8 text file (UTF-16 without its byte-order mark?); save "
                    "it as UTF-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | os.PathLike, what: str = "text file", error: type[Exception] = TextFileError) -> str:
    """The text of `path` (module doc); `error` naming the file when it is a folder, unreadable or not text."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise error(f"{p}: is a folder, expected a {what}") from None
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except OSError as err:
        raise error(f"{p}: cannot read ({err.strerror or err})") from None
    return decode(data, str(p), error)


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def loads_json(text: str, where: str, error: type[Exception] = TextFileError) -> Any:
    """Parse JSON text; `error` naming `where` with the line and column of a syntax error, or the key given twice
    in one object."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as err:
        raise error(f"{where}: key {str(err.args[0])!r} appears twice in one object (a JSON reader would keep only "
                    "the last); keep one of them") from None
    except json.JSONDecodeError as err:
        raise error(f"{where}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    except ValueError as err:  # e.g. an integer literal longer than Python converts
        raise error(f"{where}: malformed JSON ({' '.join(str(err).split())[:120]})") from None


def read_json(path: str | os.PathLike, what: str = "JSON file", error: type[Exception] = TextFileError) -> Any:
    """`read_text` then `loads_json`."""
    return loads_json(read_text(path, what, error), str(path), error)
