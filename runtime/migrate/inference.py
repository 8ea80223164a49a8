"""Infer mode's column types: the stored values decide, the declared type breaks ties.

SQLite stores any value in any column, and gives a declared type it does not know (JSON, MONEY,
DATETIME, DECIMAL(10,2)) NUMERIC affinity. A type taken from the affinity alone rejects what the
column really holds (a JSON text in a `numeric` column). Here the profile's counts of storage
classes choose the type; the declared type only names an intent, which is taken when the checks
counted by the profile prove that every stored value converts:

- JSON-ish (`JSON`, `JSONB`): every value a text that is valid JSON -> `json`, which keeps the
  text byte for byte (docs/cutover.md says why not jsonb);
- `DATE`: every value a `YYYY-MM-DD` text -> `date`; date-time texts or unix time -> as below;
- DATETIME/TIMESTAMP: every value an ISO 8601 text the stated rule reads (values.py) or unix time
  (seconds or milliseconds) -> `timestamp with time zone`;
- BOOL: every value 0/1 or a true/false text -> `boolean`;
- DECIMAL(p,s)/NUMERIC(p,s): every value a number or plain decimal text that fits -> `numeric(p,s)`;
  numbers that do not fit -> `numeric` (unbounded); other names of NUMERIC affinity (MONEY,
  NUMERIC, DECIMAL) holding only numbers -> `numeric`.
Else the storage classes decide, narrowest lossless first: integers -> `bigint`; integers and
reals -> `double precision` (or `numeric` when an integer is beyond 2^53, where a double rounds);
any text -> `text`; any blob -> `bytea` (texts as their UTF-8, numbers as their decimal text).
An empty or all-NULL column takes its declared intent, else the affinity's type.

The checks are SQL run by SQLite (in C) inside the profile's scans; each accepts a subset of what
the value rule of the chosen type converts (tests/unit/migrate/test_inference.py proves it), so
a plan never chooses a type that rejects a stored value. What no type holds losslessly (a NUL
byte in a text, invalid UTF-8, a NULL primary key, a broken foreign key) is still rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.migrate.column_profile import ColumnProfile

#: Beyond this magnitude a double cannot hold every integer.
DOUBLE_EXACT = 2**53
#: Unix time limit of the timestamp rule (values.py): milliseconds below 1e14.
_EPOCH_LIMIT = "1e14"


@dataclass(frozen=True)
class Intent:
    """What a declared type names: json | date | datetime | boolean | decimal | none."""

    kind: str
    precision: int | None = None
    scale: int | None = None


_DECIMAL = re.compile(r"^(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")


def intent_of(declared: str) -> Intent:
    """The intent of an upper-cased declared type. SQLite's own affinity words come first
    (an `INTEGER` is never a date), then the names SQLite does not know."""
    d = declared
    if "JSON" in d:
        return Intent("json")
    if "BOOL" in d:
        return Intent("boolean")
    if "INT" in d or any(w in d for w in ("CHAR", "CLOB", "TEXT", "BLOB", "REAL", "FLOA", "DOUB")):
        return Intent("none")
    if "DATETIME" in d or "TIMESTAMP" in d:
        return Intent("datetime")
    if d == "DATE":
        return Intent("date")
    match = _DECIMAL.match(d)
    if match is not None:
        precision = int(match.group(1))
        scale = int(match.group(2) or 0)
        if 0 < precision <= 1000 and scale <= precision:
            return Intent("decimal", precision, scale)
    if d:
        return Intent("decimal")  # NUMERIC affinity: MONEY, NUMERIC, DECIMAL, CURRENCY, ...
    return Intent("none")


# --- SQL checks (SQLite), each a subset of what the chosen type's value rule converts --------


def _is_text(q: str) -> str:
    return f"typeof({q}) = 'text'"


def _is_number(q: str) -> str:
    return f"typeof({q}) IN ('integer', 'real')"


def json_sql(q: str) -> str:
    """A text that is JSON by SQLite's (RFC 8259) parser; PostgreSQL's json accepts it too."""
    return f"({_is_text(q)} AND json_valid({q}))"


def _time_sql(core: str) -> str:
    """`YYYY-MM-DD HH:MM:SS` (already normalised) that SQLite reads back unchanged: a real
    calendar date and time of day (through julianday() SQLite rolls 02-30 or 24:00 over, so
    they differ)."""
    digits = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
    return (
        f"({core} GLOB '{digits}' AND datetime(julianday({core})) = {core} "
        f"AND {core} NOT GLOB '0000*')"
    )


def day_sql(q: str) -> str:
    """A `YYYY-MM-DD` text naming a real day."""
    return (
        f"({_is_text(q)} AND {q} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]' "
        f"AND date(julianday({q})) = {q} AND {q} NOT GLOB '0000*')"
    )


def datetime_sql(q: str) -> str:
    """A date, or `YYYY-MM-DD[ T]HH:MM[:SS[.f{1,6}]]` with an optional `Z` or `+HH:MM` offset:
    the forms SQLite's CURRENT_TIMESTAMP, Python's str()/isoformat() of a datetime and most
    bots write. Anything else (other spellings, spaces) is left to `text`."""
    # rest: what follows the minutes; offset: its trailing time zone, if any.
    rest = f"substr({q}, 17)"
    offset_len = (
        f"(CASE WHEN {rest} GLOB '*Z' THEN 1 "
        f"WHEN {rest} GLOB '*[+-][01][0-9]:[0-5][0-9]' OR {rest} GLOB '*[+-]2[0-3]:[0-5][0-9]' "
        "THEN 6 ELSE 0 END)"
    )
    seconds = f"substr({rest}, 1, length({rest}) - {offset_len})"  # '', ':SS' or ':SS.f...'
    core = (
        f"(substr({q}, 1, 10) || ' ' || substr({q}, 12, 5) || "
        f"CASE WHEN {seconds} = '' THEN ':00' ELSE substr({seconds}, 1, 3) END)"
    )
    fraction = f"substr({seconds}, 4)"
    # The usual forms first, in a CASE (SQLite evaluates only the branch taken): the full
    # check below costs about 25 us a value, these about 1 us.
    plain = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
    return (
        f"(CASE WHEN typeof({q}) <> 'text' THEN 0 "
        f"WHEN {q} GLOB '{plain}' THEN {_time_sql(q)} "
        f"WHEN length({q}) = 10 THEN {day_sql(q)} "
        f"ELSE {_full_datetime_sql(q, seconds, core, fraction)} END)"
    )


def _full_datetime_sql(q: str, seconds: str, core: str, fraction: str) -> str:
    return (
        f"({day_sql(q)} OR ({_is_text(q)} AND substr({q}, 11, 1) IN (' ', 'T') "
        f"AND ({seconds} = '' OR {seconds} GLOB ':[0-9][0-9]*') "
        f"AND ({fraction} = '' OR ({fraction} GLOB '.[0-9]*' AND length({fraction}) <= 7 "
        f"AND substr({fraction}, 2) NOT GLOB '*[^0-9]*')) "
        f"AND {_time_sql(core)}))"
    )


def epoch_sql(q: str) -> str:
    return f"({_is_number(q)} AND {q} > -{_EPOCH_LIMIT} AND {q} < {_EPOCH_LIMIT})"


_TRUE_FALSE = "'0', '1', 't', 'f', 'true', 'false', 'y', 'n', 'yes', 'no', 'on', 'off'"


def boolean_sql(q: str) -> str:
    texts = f"({_is_text(q)} AND lower({q}) IN ({_TRUE_FALSE}))"
    return f"(({_is_number(q)} AND {q} IN (0, 1)) OR {texts})"


def _decimal_body(q: str) -> str:
    return f"(CASE WHEN substr({q}, 1, 1) IN ('-', '+') THEN substr({q}, 2) ELSE {q} END)"


def decimal_text_sql(q: str) -> str:
    """A plain decimal text: optional sign, digits, at most one point (`990.00`, `-5`, `.5`)."""
    body = _decimal_body(q)
    return (
        f"({_is_text(q)} AND {body} GLOB '*[0-9]*' AND {body} NOT GLOB '*[^0-9.]*' "
        f"AND {body} NOT GLOB '*.*.*')"
    )


def decimal_sql(q: str) -> str:
    return f"(CASE WHEN {_is_number(q)} THEN 1 ELSE {decimal_text_sql(q)} END)"


def decimal_fit_sql(q: str, precision: int, scale: int) -> str:
    """A number or decimal text numeric(precision, scale) stores without rounding."""
    whole = precision - scale
    limit = f"1e{whole}" if whole > 18 else str(10**whole)
    body = _decimal_body(q)
    point = f"instr({body}, '.')"
    # Trailing zeros of the fraction round to nothing: '990.000' fits numeric(10,2).
    digits_after = (
        f"(CASE WHEN {point} > 0 THEN length(rtrim(substr({body}, {point} + 1), '0')) ELSE 0 END)"
    )
    integer_part = f"(CASE WHEN {point} > 0 THEN substr({body}, 1, {point} - 1) ELSE {body} END)"
    # CASE: the text checks (most of the cost) only run on texts.
    return (
        f"(CASE WHEN {_is_number(q)} THEN ({q} = round({q}, {scale}) "
        f"AND {q} > -{limit} AND {q} < {limit}) "
        f"WHEN {_is_text(q)} THEN ({decimal_text_sql(q)} AND {digits_after} <= {scale} "
        f"AND length(ltrim({integer_part}, '0')) <= {whole}) ELSE 0 END)"
    )


def hint_sql(intent: Intent, q: str) -> dict[str, str]:
    """The counts the profile takes for a column of this intent: name -> SQL condition."""
    if intent.kind == "json":
        return {"json_texts": json_sql(q)}
    if intent.kind in ("date", "datetime"):
        hints = {"datetime_values": f"({datetime_sql(q)} OR {epoch_sql(q)})"}
        if intent.kind == "date":
            hints["day_texts"] = day_sql(q)
        return hints
    if intent.kind == "boolean":
        return {"boolean_values": boolean_sql(q)}
    if intent.kind == "decimal":
        hints = {"decimal_values": decimal_sql(q)}
        if intent.precision is not None and intent.scale is not None:
            hints["decimal_fit"] = decimal_fit_sql(q, intent.precision, intent.scale)
        return hints
    return {}


# --- the choice --------------------------------------------------------------------------------


def classes_seen(profile: ColumnProfile) -> dict[str, int]:
    """The storage classes a column holds, with their counts (zero counts left out)."""
    counts = {
        "integer": profile.integer,
        "real": profile.real,
        "text": profile.text,
        "blob": profile.blob,
        "null": profile.null,
    }
    return {name: count for name, count in counts.items() if count}


def _describe(profile: ColumnProfile) -> str:
    seen = classes_seen(profile)
    seen.pop("null", None)
    return ", ".join(f"{count} {name}" for name, count in seen.items()) or "only NULL"


def _affinity_type(declared: str) -> str:
    """The type of a column that holds nothing, from SQLite's affinity rules."""
    d = declared
    if "INT" in d:
        return "bigint"
    if any(w in d for w in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in d:
        return "bytea"
    if any(w in d for w in ("REAL", "FLOA", "DOUB")):
        return "double precision"
    return "text" if not d else "numeric"


def choose_type(declared: str, profile: ColumnProfile, rowid_alias: bool) -> tuple[str, str]:
    """(PostgreSQL type, why) for a column, from its declared type and its profile."""
    if rowid_alias:
        return "bigint", "INTEGER PRIMARY KEY (rowid alias): bigint identity"
    intent = intent_of(declared)
    n = profile.non_null
    label = f"declared {declared}" if declared else "no declared type"
    held = _describe(profile)
    if not n:
        return _empty_type(declared, intent), f"{label}; holds only NULL: the declared type"
    if intent.kind == "json" and profile.json_texts == n:
        return "json", f"{label}; every value ({held}) parses as JSON: json, the text kept as is"
    if intent.kind == "date" and profile.day_texts == n:
        return "date", f"{label}; every value ({held}) is a YYYY-MM-DD date"
    if intent.kind in ("date", "datetime") and profile.datetime_values == n:
        return "timestamp with time zone", (
            f"{label}; every value ({held}) is an ISO 8601 date-time or unix time: "
            "timestamptz (no offset read as UTC)"
        )
    if intent.kind == "boolean" and profile.boolean_values == n:
        return "boolean", f"{label}; every value ({held}) is 0/1 or a true/false text: boolean"
    if intent.kind == "decimal" and profile.decimal_values == n:
        if intent.precision is not None:
            spec = f"numeric({intent.precision},{intent.scale})"
            if profile.decimal_fit == n:
                return spec, f"{label}; every value ({held}) fits {spec}"
            return "numeric", (
                f"{label}; {n - profile.decimal_fit} of {n} values do not fit {spec}: "
                "numeric (unbounded) holds them exactly"
            )
        return "numeric", f"{label}; every value ({held}) is a number: exact numeric"
    pg_type, why = _narrowest(profile, declared)
    if intent.kind != "none":
        matching = {
            "json": profile.json_texts,
            "date": profile.datetime_values,
            "datetime": profile.datetime_values,
            "boolean": profile.boolean_values,
            "decimal": profile.decimal_values,
        }[intent.kind]
        why = f"{label} ({intent.kind}), but {n - matching} of {n} values are not; {why}"
    else:
        why = f"{label}; {why}"
    return pg_type, why


def _empty_type(declared: str, intent: Intent) -> str:
    if intent.kind == "json":
        return "json"
    if intent.kind == "date":
        return "date"
    if intent.kind == "datetime":
        return "timestamp with time zone"
    if intent.kind == "boolean":
        return "boolean"
    if intent.kind == "decimal" and intent.precision is not None:
        return f"numeric({intent.precision},{intent.scale})"
    return _affinity_type(declared)


def _narrowest(profile: ColumnProfile, declared: str) -> tuple[str, str]:
    """The narrowest type holding every stored value losslessly, from the classes alone."""
    held = _describe(profile)
    if profile.blob:
        if profile.blob == profile.non_null:
            return "bytea", "holds blobs only: bytea"
        return "bytea", f"holds {held}: bytea (texts as UTF-8, numbers as decimal text)"
    if profile.text:
        if profile.text == profile.non_null:
            return "text", "holds text only: text"
        return "text", f"holds {held}: text (numbers as their decimal text)"
    fractional = profile.real > profile.integral_reals
    floating = any(w in declared for w in ("REAL", "FLOA", "DOUB"))
    if fractional or (floating and profile.real):
        if profile.wide_integers:
            return "numeric", (
                f"holds {held}, {profile.wide_integers} integers beyond 2^53: exact numeric"
            )
        return "double precision", f"holds {held}: double precision"
    return "bigint", f"holds {held}: bigint"
