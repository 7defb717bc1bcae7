"""Reading data files (UTF-8 text, CSV or TSV with a header, JSON Lines or a JSON array of objects); every
problem is a DataError that names the file and, when known, the 1-based line."""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from trm_bundle.checksums import sha256_of

DELIMITERS = {".csv": ",", ".tsv": "\t"}  # the delimited files a user's data may come in, by extension
JSON_SUFFIXES = (".jsonl", ".json")  # either holds JSON Lines or one JSON array of objects
FILE_KINDS = f"{', '.join(DELIMITERS)}, {' or '.join(JSON_SUFFIXES)}"  # as errors name them
SAVE_AS_UTF8 = "save the file as UTF-8 (in Excel: CSV UTF-8)"
EXCEL_SEPARATOR_LINE = re.compile(r"sep=(.)\r?\n")  # Excel's first line naming the delimiter: sep=;
_DECODER = json.JSONDecoder()
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


class DataError(ValueError):
    """A problem with a data file, located by file path and (when known) 1-based line number."""

    def __init__(self, path: str | Path, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


def data_hashes(data: Path, test: Path | None = None) -> dict[str, str]:
    """sha256 of the training data and the test file, by file name: a folder's files but its README, or the
    file; a test file named as a training file is recorded as test/<name>."""
    hashes = _hashes_of(data)
    for name, digest in _hashes_of(test).items() if test else ():
        hashes[f"test/{name}" if name in hashes else name] = digest
    return hashes


def _hashes_of(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix != ".md") if path.is_dir() else [path]
    return {p.name: sha256_of(p) for p in files}


_PACKED_KINDS = (  # files of other formats that users name .csv, by their first bytes
    (b"\x1f\x8b", "a gzip-compressed file: decompress it first (gunzip, or your archive tool)"),
    (b"PK\x03\x04", "a zip archive, as an Excel workbook (.xlsx) is: in Excel, save it as CSV UTF-8; else unzip it"),
)


def read_nonempty_text(path: Path) -> str:
    """The file's content decoded as UTF-8 (a leading byte-order mark dropped); it must not be blank."""
    if path.exists() and not path.is_file():
        raise DataError(path, None, "not a file but a device or a pipe (which may never end: /dev/zero was read until "
                                    f"memory ran out): save the data to a file ({FILE_KINDS})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read file: {exc.strerror or exc}") from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(path, None, f"UTF-16 text (a spreadsheet's \"Unicode text\"): {SAVE_AS_UTF8}")
    for magic, kind in _PACKED_KINDS:
        if raw.startswith(magic):
            raise DataError(path, None, kind)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(path, line, f"not valid UTF-8 text: {SAVE_AS_UTF8}") from exc
    if not text.strip():
        raise DataError(path, None, "file is empty")
    return text


def csv_rows(
    path: Path, content: str, columns: Sequence[str], delimiter: str = ",", missing_hint: str = ""
) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line, the values of `columns`) for each row of the CSV (or, by `delimiter`, TSV)
    `content` with a non-blank field, whose header must name `columns` (other columns are ignored; names
    are matched without case or surrounding spaces; a missing one is named, with `missing_hint` unless the
    delimiter looks wrong). A first line `sep=X`, as Excel writes it, names the delimiter."""
    csv.field_size_limit(max(csv.field_size_limit(), len(content)))  # one field may be a whole long document
    reader = delimited_reader(io.StringIO(content, newline=""), delimiter)
    delimiter = reader.dialect.delimiter
    if delimiter == "\t" and '"' in content and _quotes_are_text(content):
        reader = delimited_reader(io.StringIO(content, newline=""), delimiter, csv.QUOTE_NONE)
    end_of_previous = reader.line_num
    try:
        header = [name.strip() for name in next(reader)]
        names = [name.lower() for name in header]
        for column in columns:
            if column.lower() not in names:
                hint = _delimiter_hint(header, delimiter) or _data_as_header_hint(header, columns) + missing_hint
                raise DataError(path, 1, f"missing column '{column}' (the header has: {', '.join(header)}){hint}")
        for column in columns:
            found = [number for number, name in enumerate(names, start=1) if name == column.lower()]
            if len(found) > 1:
                raise DataError(path, 1, f"the header names column '{column}' {len(found)} times (columns "
                                         f"{', '.join(map(str, found))}): name each column once")
        positions = [names.index(column.lower()) for column in columns]
        end_of_previous = reader.line_num
        for fields in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num
            if not any(field.strip() for field in fields):  # a blank line, or a spreadsheet's empty row
                continue
            if len(fields) != len(header):
                raise DataError(path, line, _field_count_problem(len(fields), len(header), delimiter,
                                                                 reader.line_num - line))
            yield line, [fields[position] for position in positions]
    except csv.Error as exc:
        start = end_of_previous + 1
        if "unexpected end of data" in str(exc):
            raise DataError(path, start, "a double quote opens a field here that no later double quote closes (the "
                                         "rest of the file would be read as one text): close it, or write a quote "
                                         'inside a field as two ("")') from exc
        if "expected after" in str(exc):
            raise DataError(path, start, _closed_quote_problem(reader.line_num - start)) from exc
        raise DataError(path, reader.line_num, f"malformed CSV: {exc}") from exc


def delimited_reader(lines: TextIO, delimiter: str, quoting: int = csv.QUOTE_MINIMAL) -> Any:
    """A strict `csv.reader` of `lines` (opened with newline=""), by `delimiter` or by the one that an Excel `sep=X`
    first line names (that line read, and counted in its line_num). Strict: a quoted field must end at its closing
    quote, so a stray quote that would swallow the rows up to the next quote of the file (or a text that only
    starts with a quotation) is an error, not a silent merge."""
    first = lines.readline()
    excel_separator = EXCEL_SEPARATOR_LINE.match(first)
    reader = csv.reader(itertools.chain([first], lines), delimiter=excel_separator.group(1) if excel_separator
                        else delimiter, strict=True, quoting=quoting)
    if excel_separator:
        next(reader)
    return reader


def _quotes_are_text(content: str) -> bool:
    """Whether a tab-separated file's double quotes are ordinary characters (plain TSV, as most tools write it, has
    no quoting): read with CSV's quoting it fails (a text that starts with a quotation, a lone quote), read without
    it every row has the header's fields."""

    def every_row_whole(quoting: int) -> bool:
        rows = delimited_reader(io.StringIO(content, newline=""), "\t", quoting)
        try:
            fields = len(next(rows, []))
            return all(len(row) == fields for row in rows if any(field.strip() for field in row))
        except csv.Error:
            return False

    return not every_row_whole(csv.QUOTE_MINIMAL) and every_row_whole(csv.QUOTE_NONE)


def _closed_quote_problem(more_lines: int) -> str:
    """What a field whose closing double quote has text after it tells the user (a strict reader's error)."""
    fix = 'put the whole field in double quotes and write each quote inside it as two ("\"\"hi\"\" she said")'
    if more_lines:  # the quote opened here, and the next quote of the file, lines further on, closed it
        return (f"a double quote opens a field here that the next double quote, {counted(more_lines, 'line')} further "
                "on, closes inside a text (the rows between would be read as one text): remove a stray quote, or "
                + fix)
    return f'a field starts with a double quote that closes before the field ends ("hi" she said): {fix}'


def _field_count_problem(fields: int, expected: int, delimiter: str, more_lines: int) -> str:
    """What a row with the wrong number of fields tells the user, and the likely fix."""
    problem = f"row has {counted(fields, 'field')} but the header has {expected}"
    if more_lines:  # a quote opened in this row and closed lines later, or never
        return (f"{problem}: a double quote opens a field here that ends {counted(more_lines, 'line')} further on; "
                "close it, or write a quote inside a field as two (\"\")")
    separator = "a comma" if delimiter == "," else "a tab"
    return f"{problem} (a field holding {separator} or a line break goes in double quotes)"


def _data_as_header_hint(header: list[str], columns: Sequence[str]) -> str:
    """A hint when the first line looks like a row of data rather than column names."""
    if any(" " in name for name in header):
        return f"; if the first line is data, add a header line first: {','.join(columns)}"
    return ""


def counted(number: int, noun: str) -> str:
    """"1 line", "2 lines": a count with its noun, singular or plural."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _delimiter_hint(header: list[str], delimiter: str) -> str:
    """A hint when a one-column header looks like another delimiter's than the file's extension says."""
    if len(header) == 1:
        own = "commas" if delimiter == "," else "tabs"
        for other, name, fix in ((";", "semicolons", f"save it with {own}, or make its first line sep=;"),
                                 ("\t", "tabs", "name it .tsv"),
                                 (",", "commas", "name it .csv")):
            if other != delimiter and other in header[0]:
                return f"; the file seems to separate its columns with {name}: {fix}"
    return ""


def iter_json_objects(path: Path, content: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line, object) for each item of a JSON array (the line where the item starts) or each
    non-blank line of JSON Lines; anything but a JSON object is an error."""
    first_line, _, rest = content.lstrip().partition("\n")
    first_value = _whole_json(first_line) if first_line.startswith("[") else None
    rows_as_arrays = bool(rest.strip()) and isinstance(first_value, list) and not any(
        isinstance(item, dict) for item in first_value)  # JSON Lines of ["text", "label"]: each row told as one
    if first_line.startswith("[") and not rows_as_arrays:
        for line, value in _located(_array_items(path, content)):
            yield line, _json_object(path, line, value)
        return
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            if content.lstrip().startswith("{") and isinstance(_whole_json(content), dict):
                raise DataError(path, None, "one JSON object over many lines: expected a JSON array of objects, "
                                            "or JSON Lines (one object per line)") from exc
            raise DataError(path, number, f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
        except (RecursionError, ValueError) as exc:
            raise DataError(path, number, unreadable_json(exc)) from exc
        yield number, _json_object(path, number, value)


class ItemLine(int):
    """The 1-based line of an item of a JSON array whose items share lines (pandas' `to_json(orient="records")`
    writes them all on line 1), with the item's 1-based index, which it is printed with: "1 (item 37)"."""

    item: int

    def __new__(cls, line: int, item: int) -> ItemLine:
        located = super().__new__(cls, line)
        located.item = item
        return located

    def __str__(self) -> str:
        return f"{int(self)} (item {self.item})"


def _located(items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """The array's (line, item) pairs, each line an ItemLine where the first two items start on one line."""
    head = list(itertools.islice(items, 2))
    packed = len(head) == 2 and head[0][0] == head[1][0]
    for index, (line, value) in enumerate(itertools.chain(head, items), start=1):
        yield (ItemLine(line, index) if packed else line), value


def _array_items(path: Path, content: str) -> Iterator[tuple[int, Any]]:
    """(line, value) for each item of the JSON array `content`, decoded one item at a time so that each is
    located and the first bad one named."""
    line, counted_to = 1, 0

    def line_at(position: int) -> int:  # positions only grow: count each stretch's line breaks once
        nonlocal line, counted_to
        line, counted_to = line + content.count("\n", counted_to, position), position
        return line

    position = _JSON_SPACE.match(content, content.index("[") + 1).end()
    if not content.startswith("]", position):
        while True:
            try:
                value, end = _DECODER.raw_decode(content, position)
            except json.JSONDecodeError as exc:
                if content.startswith("]", exc.pos) and exc.pos == position:  # `[..., {...},]`
                    comma = content.rindex(",", 0, position)
                    raise DataError(path, content.count("\n", 0, comma) + 1,
                                    "invalid JSON: a comma after the array's last item: remove it") from exc
                raise DataError(path, exc.lineno, f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
            except (RecursionError, ValueError) as exc:
                raise DataError(path, line_at(position), unreadable_json(exc)) from exc
            yield line_at(position), value
            position = _JSON_SPACE.match(content, end).end()
            if not content.startswith(",", position):
                break
            position = _JSON_SPACE.match(content, position + 1).end()
        if not content.startswith("]", position):
            raise DataError(path, line_at(position), "invalid JSON: expected ',' or ']' after an item of the array")
    position = _JSON_SPACE.match(content, position + 1).end()
    if position < len(content):
        raise DataError(path, line_at(position), "invalid JSON: text after the array's closing ']'")


_JSON_KINDS = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}


def _json_object(path: Path, line: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(path, line, f"expected a JSON object (a row, its columns as fields), got "
                                    f"{_JSON_KINDS.get(type(value), 'a number')}")
    if value and all(isinstance(field, dict) for field in value.values()):
        raise DataError(path, line, "every field holds an object: columns of {row: value}, as pandas' to_json() "
                                    "writes by default; write one object per line: "
                                    "df.to_json(FILE, orient=\"records\", lines=True)")
    return value


def _whole_json(content: str) -> Any:
    """`content` as one JSON value, or None where it is not one (or one too deep or too large to read)."""
    try:
        return json.loads(content)
    except (RecursionError, ValueError):  # json.JSONDecodeError is a ValueError
        return None


def unreadable_json(error: RecursionError | ValueError) -> str:
    """What a DataError says of valid JSON that Python's reader refuses: nested past its recursion limit (a
    RecursionError traceback), or an integer of more digits than it converts (told without file or line)."""
    if isinstance(error, RecursionError):
        return "JSON nested too deeply to read (a row is an object of text and label fields)"
    return (f"a number of more than {sys.get_int_max_str_digits():,} digits, which Python's JSON reader does not "
            "take: write it in quotes, as text")


def string_field(
    path: Path, line: int, obj: dict[str, Any], key: str, integers: bool = False, missing_hint: str = "",
    one_label: bool = False,
) -> str:
    """obj[key], which must be present (else an error ending in `missing_hint`) and a string (or, with
    `integers`, a whole JSON number, read as its decimal text: class ids such as `"label": 3` or `3.0`; or
    true / false, read as "true" / "false"); a `one_label` field given a list is told that a row has one label."""
    if key not in obj:
        outer, _, inner = key.partition(".")
        nested = (f"; fields inside an object are not read: put '{inner}' of '{outer}' at the top level of each row"
                  if inner and isinstance(obj.get(outer), dict) else "")
        if obj and all(isinstance(value, list) for value in obj.values()):  # {"train": [[text, label], ...], ...}
            missing_hint = ("; rows inside its lists are not read: give one object per row, as JSON Lines or a JSON "
                            f"array of objects with a field '{key}'")
        raise DataError(path, line, f"missing field '{key}' (the object has: {', '.join(obj) or 'no fields'})"
                                    f"{nested}{missing_hint}")
    value = obj[key]
    if integers and isinstance(value, bool):
        return "true" if value else "false"
    if integers and isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))  # a class id, also as a spreadsheet or pandas writes it (5.0)
    if not isinstance(value, str):
        kinds = "a string, a whole number or true / false" if integers else "a string"
        shown = "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else json.dumps(value)
        several = ("; a row has one label: a task of several labels per row (multi-label) is not one this trainer "
                   "fits" if one_label and isinstance(value, list) else "")
        raise DataError(path, line, f"field '{key}' must be {kinds}, got {shown}{several}")
    return value


def first_json_object(path: Path) -> dict[str, Any] | None:
    """The first object of a JSON Lines file (read no further than its first line) or of a JSON array, or None
    if the file does not start with one."""
    if not path.is_file():  # a device or a pipe may never end (the text loader names it)
        return None
    try:
        with path.open(encoding="utf-8-sig") as handle:
            first_line = next((line for line in handle if line.strip()), "")
            content = first_line + handle.read() if first_line.lstrip().startswith("[") else first_line
        first = next(iter_json_objects(path, content), None)
    except (OSError, UnicodeDecodeError, DataError):
        return None
    return None if first is None else first[1]


_FIELD_OF_EARLIER_ROWS = "; the rows before it have it: give it on this row too, or remove the row"


def read_records(
    path: Path, columns: Sequence[str], integer_columns: Sequence[str] = (), missing_hint: str = "",
    label_column: str | None = None,
) -> list[tuple[int, list[str]]]:
    """(1-based line, the values of `columns`) for every record of a user's .csv or .tsv (a header naming
    `columns`; other columns ignored) or .jsonl or .json file (JSON Lines or an array: objects with string
    `columns`; JSON integers too in `integer_columns`; a classifier's `label_column`, one label a row); a file
    without records is an error, and so is a missing column (`missing_hint` ends its message)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise DataError(path, None, f"a folder: give the data file itself ({FILE_KINDS})")
    if str(path) == "-":
        raise DataError(path, None, f"standard input is not read: save the data to a file ({FILE_KINDS})")
    if suffix not in (*DELIMITERS, *JSON_SUFFIXES):
        raise DataError(path, None, f"unknown file extension '{path.suffix}': expected {FILE_KINDS}")
    content = read_nonempty_text(path)
    if suffix in DELIMITERS:
        records = list(csv_rows(path, content, columns, DELIMITERS[suffix], missing_hint))
    else:
        records = []
        for line, obj in iter_json_objects(path, content):
            hint = missing_hint if not records else _FIELD_OF_EARLIER_ROWS
            records.append((line, [string_field(path, line, obj, column, column in integer_columns, hint,
                                                column == label_column) for column in columns]))
    if not records:
        raise DataError(path, None, "no data rows")
    return records
