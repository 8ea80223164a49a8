"""The value rules of values.py for typed columns, computed on Arrow arrays (no Python per value).

The Python rules are the spec. Each function here takes one column of one batch, split by the
SQLite storage class of its values (an int64, a double and a string array of equal length, each
null where the value is of another class or NULL), and returns the array the fast copy sends -
or raises `NotConvertible` when any value is outside the subset it converts exactly as the
Python rule does. The caller then copies the whole chunk on the Python path (rules, rejects),
so a value is never changed, dropped or rejected here: the subset is kept narrow and plain
(tests/unit/migrate/test_arrow_rules.py proves it equal to the Python rules on generated data):

- boolean: integers and reals 0/1; texts exactly one of the rule's true/false words, in any
  ASCII case (no surrounding space);
- date: `YYYY-MM-DD` texts naming a real day of years 1-9999;
- timestamps: `YYYY-MM-DD`, `YYYY-MM-DD[ T]HH:MM:SS[.f{1,6}]` with an optional `Z` or
  `+HH:MM` offset; integers and integral reals as unix seconds (|n| < 1e11, from year 1);
- numeric(p,s) with s <= 6: integers that fit; reals whose shortest text has at most s decimals
  (p <= 15, where two such decimals cannot round to one double); decimal texts `-?d+[.d+]` with
  at most s decimals that fit;
- numeric (unbounded): integers; non-integral reals below 9e7 with at most 6 decimals; decimal
  texts with at most 6 decimals, the last not 0 (the driver sends the shortest scale, the
  Python rule the written one);
- json: texts as stored; jsonb: texts as stored behind jsonb's binary version byte.
A NULL in a NOT NULL column is left to the Python rule too (it rejects the row).
Each subset is also within what the profile's SQL checks accept for the type (inference.py), so
a table planned from its declared types (plan.py `declared_columns`) that the Arrow rules copy
whole gets the types a profile would have chosen.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from runtime.migrate.arrow_scope import MAX_ARROW_SCALE, numeric_modifiers
from runtime.migrate.plan import ColumnPlan

# pyarrow imports dateutil (for its relativedelta) each time it converts a Python value, such
# as a literal argument of a compute function; where dateutil is not installed, every attempt
# searches sys.path again. Recorded once as missing, each attempt fails at once.
if "dateutil" not in sys.modules and importlib.util.find_spec("dateutil") is None:
    sys.modules["dateutil"] = None  # type: ignore[assignment]

#: The storage classes a typed column is read in, and the Arrow type each arrives as.
CLASS_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "real": pa.float64(),
    "text": pa.string(),
}

_MICROS = 1_000_000
_SECONDS_LIMIT = 10**11  # values.py: beyond this a unix time is milliseconds
_YEAR_ONE = -62_135_596_800  # 0001-01-01T00:00:00Z in unix seconds: Python's first datetime
_UNBOUNDED_REAL_LIMIT = 9e7  # |x| * 2^-52 stays far below 10^-6: one decimal per double
_TRUE = ("1", "t", "true", "y", "yes", "on")
_FALSE = ("0", "f", "false", "n", "no", "off")
_DATE = r"(?P<y>[0-9]{4})-(?P<m>[0-9]{2})-(?P<d>[0-9]{2})"
_TIMESTAMP = (
    rf"^{_DATE}(?:[ T](?P<H>[0-9]{{2}}):(?P<M>[0-9]{{2}}):(?P<S>[0-9]{{2}})"
    r"(?:\.(?P<f>[0-9]{1,6}))?(?P<z>Z|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))?)?$"
)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class NotConvertible(Exception):
    """A value outside what the Arrow rules convert: the chunk takes the Python path."""


Classes = dict[str, pa.Array]


def arrow_type(column: ColumnPlan) -> pa.DataType:
    """The Arrow type the fast copy sends a typed column as (the PostgreSQL driver's mapping)."""
    kind = column.converter
    if kind == "numeric":
        return pa.decimal128(38, _scale(column))
    return _SEND_TYPES[kind]


def convert(column: ColumnPlan, classes: Classes) -> pa.Array:
    """The column's values as PostgreSQL gets them; raises NotConvertible (see module doc)."""
    kind = column.converter
    if kind == "numeric":
        result = _numeric(classes, _precision(column), _scale(column))
    else:
        result = _RULES[kind](classes)
    if column.not_null and result.null_count:
        raise NotConvertible("NULL in a NOT NULL column")
    return result


def _need(ok: pa.Array | np.ndarray, values: pa.Array, what: str) -> None:
    """Every non-null value of `values` must have `ok` true (null `ok` counts as false)."""
    if isinstance(ok, np.ndarray):
        ok = pa.array(ok, pa.bool_())
    bad = pc.and_(pc.invert(ok.fill_null(False)), pc.is_valid(values))
    if pc.any(bad).as_py():
        raise NotConvertible(what)


def _merge(parts: list[pa.Array], arrow: pa.DataType, length: int) -> pa.Array:
    """One array from the per-class results (each null outside its class)."""
    if not parts:
        return pa.nulls(length, arrow)
    if len(parts) == 1:
        return parts[0]
    return pc.coalesce(*parts)


def _present(classes: Classes, name: str) -> pa.Array | None:
    """The class's array, or None when it holds no value in this batch."""
    array = classes.get(name)
    if array is None or array.null_count == len(array):
        return None
    return array


def _only(classes: Classes, *allowed: str) -> None:
    for name in classes:
        if name not in allowed and _present(classes, name) is not None:
            raise NotConvertible(f"{name} values")


def _length(classes: Classes) -> int:
    return len(next(iter(classes.values())))


# --- boolean ------------------------------------------------------------------------------


def _boolean(classes: Classes) -> pa.Array:
    parts = []
    for name in ("integer", "real"):
        numbers = _present(classes, name)
        if numbers is not None:
            _need(pc.is_in(numbers, pa.array([0, 1], numbers.type)), numbers, "a number not 0 or 1")
            parts.append(pc.equal(numbers, pa.scalar(1, numbers.type)))
    texts = _present(classes, "text")
    if texts is not None:
        lowered = pc.ascii_lower(texts)
        true = pc.is_in(lowered, pa.array(_TRUE))
        _need(pc.or_(true, pc.is_in(lowered, pa.array(_FALSE))), texts, "a text not a boolean word")
        parts.append(pc.if_else(pc.is_null(texts), pa.scalar(None, pa.bool_()), true))
    return _merge(parts, pa.bool_(), _length(classes))


# --- dates and timestamps -------------------------------------------------------------------


def _field(groups: dict[str, pa.Array], name: str) -> np.ndarray:
    """A matched group as integers (0 where the group took no part, or nothing matched)."""
    values = groups[name]
    values = pc.if_else(pc.equal(values, ""), "0", values).fill_null("0")
    result: np.ndarray = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
    return result


def _days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01, valid) of a proleptic Gregorian date (H. Hinnant's algorithm);
    valid: a real day of years 1-9999, as Python's date() requires."""
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    in_range = (year >= 1) & (month >= 1) & (month <= 12)
    days_in_month = _DAYS_IN_MONTH[np.where(in_range, month, 1)] + (leap & (month == 2))
    valid = in_range & (day >= 1) & (day <= days_in_month)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468, valid


def _matched(texts: pa.Array, pattern: str, what: str) -> dict[str, pa.Array]:
    """The named groups of every text (each must match), null where the text is NULL."""
    matched = pc.extract_regex(texts, pattern)
    _need(pc.is_valid(matched), texts, what)
    names = [matched.type.field(i).name for i in range(matched.type.num_fields)]
    return dict(zip(names, matched.flatten(), strict=True))


def _text_moments(texts: pa.Array) -> np.ndarray:
    """Microseconds since the epoch of timestamp texts: UTC for texts with an offset, the wall
    clock for the others; NotConvertible for any other text."""
    plain = _plain_moments(texts)
    if plain is not None:
        return plain
    groups = _matched(texts, _TIMESTAMP, "a text in another form")
    days, valid = _days(_field(groups, "y"), _field(groups, "m"), _field(groups, "d"))
    hour, minute, second = _field(groups, "H"), _field(groups, "M"), _field(groups, "S")
    offset_hours, offset_minutes = _field(groups, "oh"), _field(groups, "om")
    valid &= (hour <= 23) & (minute <= 59) & (second <= 59)
    valid &= (offset_hours <= 23) & (offset_minutes <= 59)
    _need(valid, texts, "an invalid date or time")
    fraction = pc.utf8_rpad(groups["f"].fill_null(""), 6, "0")
    micros = pc.cast(fraction, pa.int64()).to_numpy(zero_copy_only=False)
    negative = pc.equal(groups["sign"], "-").fill_null(False).to_numpy(zero_copy_only=False)
    offset = np.where(negative, -1, 1) * (offset_hours * 60 + offset_minutes) * 60
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset
    moments: np.ndarray = seconds * _MICROS + micros
    return moments


#: `YYYY-MM-DD HH:MM:SS` (or `T` between): the positions of its digits and separators.
_PLAIN_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_PLAIN_WIDTH = 19


def _plain_moments(texts: pa.Array) -> np.ndarray | None:
    """What `_text_moments` gives, for an array whose every text is `YYYY-MM-DD HH:MM:SS` (or
    with `T`) of a real day and time: read at fixed positions by numpy, where the regex's
    extraction was most of a column's conversion. None when any text is in another form or out
    of range: the regex then decides."""
    if texts.type != pa.string():
        return None
    present = texts.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(
        texts.buffers()[1], dtype="<i4", count=len(texts) + 1, offset=texts.offset * 4
    )
    starts = offsets[:-1][present]
    if not len(starts):
        return np.zeros(len(texts), np.int64)
    if not (np.diff(offsets)[present] == _PLAIN_WIDTH).all():
        return None
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)
    chars = data[starts[:, None] + np.arange(_PLAIN_WIDTH)]
    digits = chars[:, _PLAIN_DIGITS] - np.uint8(ord("0"))  # a non-digit wraps beyond 9
    separators = (
        (chars[:, 4] == ord("-"))
        & (chars[:, 7] == ord("-"))
        & ((chars[:, 10] == ord(" ")) | (chars[:, 10] == ord("T")))
        & (chars[:, 13] == ord(":"))
        & (chars[:, 16] == ord(":"))
    )
    if not ((digits <= 9).all() and separators.all()):
        return None
    d = digits.astype(np.int64)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    hour, minute, second = (d[:, i] * 10 + d[:, i + 1] for i in (8, 10, 12))
    days, valid = _days(year, d[:, 4] * 10 + d[:, 5], d[:, 6] * 10 + d[:, 7])
    if not (valid & (hour <= 23) & (minute <= 59) & (second <= 59)).all():
        return None
    moments = np.zeros(len(texts), np.int64)
    moments[present] = (days * 86400 + hour * 3600 + minute * 60 + second) * _MICROS
    return moments


def _epoch_micros(classes: Classes) -> list[pa.Array]:
    """Unix seconds (integers, integral reals) as microseconds; NotConvertible for the rest."""
    parts = []
    integers = _present(classes, "integer")
    if integers is not None:
        _need(_unix_seconds(integers), integers, "a unix time in milliseconds or out of range")
        parts.append(pc.multiply(integers, _MICROS))
    reals = _present(classes, "real")
    if reals is not None:
        integral = pc.equal(reals, pc.trunc(reals))
        _need(pc.and_kleene(integral, _unix_seconds(reals)), reals, "a fractional or far unix time")
        parts.append(pc.multiply(pc.cast(reals, pa.int64()), _MICROS))
    return parts


def _unix_seconds(numbers: pa.Array) -> pa.Array:
    return pc.and_(
        pc.greater_equal(numbers, pa.scalar(_YEAR_ONE, numbers.type)),
        pc.less(numbers, pa.scalar(_SECONDS_LIMIT, numbers.type)),
    )


def _timestamp(classes: Classes, *, zoned: bool) -> pa.Array:
    """to_timestamptz (`zoned`) or to_timestamp: both give UTC for an offset or a unix time, and
    the wall clock of a text without an offset (UTC for timestamptz)."""
    parts = [pc.cast(part, pa.int64()) for part in _epoch_micros(classes)]
    texts = _present(classes, "text")
    if texts is not None:
        nulls = pc.is_null(texts).to_numpy(zero_copy_only=False)
        parts.append(pa.array(_text_moments(texts), pa.int64(), mask=nulls))
    arrow = _SEND_TYPES["timestamp with time zone" if zoned else "timestamp without time zone"]
    return _merge(parts, pa.int64(), _length(classes)).cast(arrow)


def _date(classes: Classes) -> pa.Array:
    _only(classes, "text")
    texts = _present(classes, "text")
    if texts is None:
        return pa.nulls(_length(classes), pa.date32())
    groups = _matched(texts, f"^{_DATE}$", "a text not YYYY-MM-DD")
    days, valid = _days(_field(groups, "y"), _field(groups, "m"), _field(groups, "d"))
    nulls = pc.is_null(texts).to_numpy(zero_copy_only=False)
    _need(valid, texts, "a day that does not exist")
    return pa.array(days.astype(np.int32), pa.int32(), mask=nulls).cast(pa.date32())


# --- numeric --------------------------------------------------------------------------------


def _precision(column: ColumnPlan) -> int | None:
    modifiers = numeric_modifiers(column.pg_type)
    return modifiers[0] if modifiers else None


def _scale(column: ColumnPlan) -> int:
    modifiers = numeric_modifiers(column.pg_type)
    if not modifiers:
        return MAX_ARROW_SCALE
    return modifiers[1] if len(modifiers) > 1 else 0


def _decimal(unscaled: np.ndarray, nulls: np.ndarray, scale: int) -> pa.Array:
    """decimal128(38, scale) from int64 unscaled values (two's complement in 128 bits)."""
    words = np.empty(2 * len(unscaled), dtype="<i8")
    words[0::2] = unscaled
    words[1::2] = unscaled >> 63
    validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
    return pa.Array.from_buffers(
        pa.decimal128(38, scale), len(unscaled), [validity, pa.py_buffer(words)]
    )


def _numeric(classes: Classes, precision: int | None, scale: int) -> pa.Array:
    length = _length(classes)
    arrow = pa.decimal128(38, scale)
    parts = []
    integers = _present(classes, "integer")
    if integers is not None:
        if precision is not None and precision - scale <= 18:
            limit = 10 ** (precision - scale)
            inside = pc.and_(pc.greater(integers, -limit), pc.less(integers, limit))
            _need(inside, integers, "an integer beyond the precision")
        parts.append(pc.cast(integers, arrow))
    reals = _present(classes, "real")
    if reals is not None:
        parts.append(_numeric_reals(reals, precision, scale))
    texts = _present(classes, "text")
    if texts is not None:
        parts.append(_numeric_texts(texts, precision, scale))
    return _merge(parts, arrow, length)


def _numeric_reals(reals: pa.Array, precision: int | None, scale: int) -> pa.Array:
    nulls = pc.is_null(reals).to_numpy(zero_copy_only=False)
    x = reals.fill_null(0.0).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", over="ignore"):
        if precision is not None:
            # One decimal of at most `scale` places per double when |x| < 10^(p-s), p <= 15: it
            # is then repr(x)'s value (the Python rule), rounded by nothing in numeric(p,s).
            if precision > 15:
                raise NotConvertible("reals in a numeric wider than 15 digits")
            unscaled = np.rint(x * 10.0**scale)
            ok = (unscaled / 10.0**scale == x) & (np.abs(unscaled) < 10.0**precision)
            _need(ok, reals, "a real with more decimals than the scale, or too large")
            return _decimal(np.where(nulls, 0, unscaled).astype(np.int64), nulls, scale)
        # Unbounded: repr(x) gives Decimal its scale (`5.0` keeps one decimal, where the driver
        # would send `5`): only reals with a fraction, found at their fewest decimals.
        ok = np.isfinite(x) & (np.abs(x) < _UNBOUNDED_REAL_LIMIT) & (x != np.trunc(x))
        _need(ok, reals, "an integral, large or non-finite real")
        found = nulls.copy()
        unscaled = np.zeros(len(x), dtype=np.int64)
        for places in range(1, scale + 1):
            candidate = np.rint(x * 10.0**places)
            hit = ~found & (candidate / 10.0**places == x)
            unscaled[hit] = candidate[hit].astype(np.int64) * 10 ** (scale - places)
            found |= hit
        _need(found, reals, "a real with more than six decimals")
    return _decimal(unscaled, nulls, scale)


def _numeric_texts(texts: pa.Array, precision: int | None, scale: int) -> pa.Array:
    whole = 38 - scale if precision is None else precision - scale
    # Unbounded: the last decimal not 0 (Decimal('1.50') keeps its two places).
    fraction = "[0-9]*[1-9]" if precision is None else "[0-9]+"
    pattern = rf"^-?0*[0-9]{{0,{whole}}}(?:\.(?:{fraction}))?$"
    fits = pc.and_(pc.match_substring_regex(texts, pattern), _fraction_fits(texts, scale))
    fits = pc.and_(fits, pc.match_substring_regex(texts, "[0-9]"))
    _need(fits, texts, "a text not a fitting decimal")
    try:
        return pc.cast(texts, pa.decimal128(38, scale))
    except pa.ArrowInvalid as exc:
        raise NotConvertible(str(exc)) from None


def _fraction_fits(texts: pa.Array, scale: int) -> pa.Array:
    return pc.invert(pc.match_substring_regex(texts, rf"\.[0-9]{{{scale + 1},}}$"))


# --- json -----------------------------------------------------------------------------------


def _json(classes: Classes) -> pa.Array:
    _only(classes, "text")
    texts = _present(classes, "text")
    return texts if texts is not None else pa.nulls(_length(classes), pa.string())


def _jsonb(classes: Classes) -> pa.Array:
    """jsonb's binary input is a version byte (1) and the text."""
    texts = _json(classes)
    prefixed = pc.binary_join_element_wise(pa.scalar("\x01"), texts, "")
    return prefixed.cast(pa.binary())


#: Rules that convert texts only (`_only(classes, "text")`): other classes are not read.
_TEXT_ONLY = frozenset({"date", "json", "jsonb"})


def classes_taken(kind: str) -> tuple[str, ...]:
    """The storage classes the rule of a target base type converts any value of."""
    return ("text",) if kind in _TEXT_ONLY else tuple(CLASS_TYPES)


_RULES: dict[str, Callable[[Classes], pa.Array]] = {
    "boolean": _boolean,
    "date": _date,
    "timestamp with time zone": lambda c: _timestamp(c, zoned=True),
    "timestamp without time zone": lambda c: _timestamp(c, zoned=False),
    "json": _json,
    "jsonb": _jsonb,
}
_SEND_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "timestamp without time zone": pa.timestamp("us"),
    "json": pa.string(),
    "jsonb": pa.binary(),
}
