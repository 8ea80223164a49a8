"""Listings from nmarket and tradeagent channel posts.

Fields: complex, rooms, area, floor, price, commission.

Posts are written by people, so the parser is a set of tolerant patterns over normalised text, not a
grammar. A post that lists several flats one per line ("1-к 38 м² — 5,2 млн") yields one flat per
line; otherwise the fields are gathered from the whole post. A post without a complex or a price is
returned as `Unparsed` with a reason, so the monitor can keep and count it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

MIN_PRICE_RUB = 300_000
MAX_PRICE_RUB = 2_000_000_000
MIN_AREA_M2 = Decimal(8)
MAX_AREA_M2 = Decimal(1000)


@dataclass(frozen=True)
class Flat:
    rooms: int | None  # 0 = studio
    area_m2: Decimal | None
    price_rub: int
    floor: int | None = None
    floors_total: int | None = None


@dataclass(frozen=True)
class Commission:
    percent: Decimal | None = None
    amount_rub: int | None = None


@dataclass(frozen=True)
class Listing:
    complex_name: str
    flats: tuple[Flat, ...]
    commission: Commission | None


@dataclass(frozen=True)
class Unparsed:
    reason: str  # no_complex | no_price | no_flat | empty


# --- normalisation ------------------------------------------------------------------------------

_SPACES = re.compile(r"[\u00a0\u2007\u202f\u2009\u200a\t]+")
_AREA_UNIT = r"(?:м²|м2|м\.?\s?кв\.?|кв\.?\s?м\.?|кв\.?\s?метр\w*|квм|sq\.?\s?m|m²|m2)"


def normalise(text: str) -> str:
    text = _SPACES.sub(" ", text)
    return text.replace("ё", "е").replace("Ё", "Е").replace("\r\n", "\n")


def _decimal(raw: str) -> Decimal:
    return Decimal(raw.replace(",", ".").replace(" ", ""))


# --- complex ------------------------------------------------------------------------------------

_COMPLEX_QUOTED = re.compile(
    r"(?:\bЖК|\bЖилой\s+комплекс|\bЖилой\s+квартал|\bКвартал|\bКД|\bКлубный\s+дом)\s*[:\-–—]?\s*"
    r"[«\"“„']\s*([^»\"”“'\n]{1,60}?)\s*[»\"”“']",
    re.IGNORECASE,
)
_COMPLEX_BARE = re.compile(
    r"(?:\bЖК|\bЖилой\s+комплекс)[ ]*[:\-–—]?[ ]*([A-ZА-Я0-9][\w\-]*(?:[ ]+[\w\-]+){0,3})",
    re.IGNORECASE,
)
_COMPLEX_HASHTAG = re.compile(r"#ЖК_?([\w]+)", re.IGNORECASE)
#: Words that end a bare complex name ("ЖК Солнечный от застройщика", "ЖК Лесной 2 очередь").
_NAME_STOP_WORDS = """от в на у с со по для и сдача сдан сдается корпус корп к литер дом очередь
    секция сек старт продаж ипотека рассрочка скидка цена цены комиссия кв квартира квартиры студия
    студии этаж эт срочно новинка акция"""
_NAME_STOP = frozenset(_NAME_STOP_WORDS.split())
_ROOMS_START = re.compile(r"^\d+\s*-?\s*(?:к|комн|кк|е)\b", re.IGNORECASE)


def find_complex(text: str) -> str | None:
    quoted = _COMPLEX_QUOTED.search(text)
    if quoted is not None:
        return _tidy_name(quoted.group(1))
    bare = _COMPLEX_BARE.search(text)
    if bare is not None:
        words: list[str] = []
        for word in bare.group(1).split():
            cleaned = word.strip(".,;:!?()")
            if not cleaned or cleaned.lower() in _NAME_STOP or _ROOMS_START.match(cleaned):
                break
            if words and find_rooms(cleaned) is not None:  # "ЖК Mainstreet двухкомнатная"
                break
            if any(ch.isdigit() for ch in cleaned) and words:
                break
            words.append(cleaned)
            if cleaned != word.rstrip(".;:!?()"):  # a comma ended the name
                break
            if word[-1:] in ",.;:!?":
                break
        name = " ".join(words)
        if name:
            return _tidy_name(name)
    tag = _COMPLEX_HASHTAG.search(text)
    if tag is not None:
        return _tidy_name(tag.group(1).replace("_", " "))
    return None


def _tidy_name(name: str) -> str:
    name = " ".join(name.split()).strip(" -–—.,")
    return name[:1].upper() + name[1:]


# --- rooms --------------------------------------------------------------------------------------

_ROOM_WORDS = {
    "однокомнатн": 1,
    "однушк": 1,
    "двухкомнатн": 2,
    "двушк": 2,
    "евродвушк": 2,
    "трехкомнатн": 3,
    "трешк": 3,
    "евротрешк": 3,
    "четырехкомнатн": 4,
    "пятикомнатн": 5,
}
_ROOMS_DIGIT = re.compile(
    r"(?<![\d.,/])(\d)\s*-?\s*(?:х\s*)?(?:к(?:омн(?:атн\w*)?|кв|\.|\b)|кк\b|ккв\b|e\b|е\b)",
    re.IGNORECASE,
)
_ROOMS_EURO = re.compile(r"\bевро\s*-?\s*(\d)\b", re.IGNORECASE)
_STUDIO = re.compile(r"\bстуди[яиюей]\w*\b", re.IGNORECASE)


def find_rooms(text: str) -> int | None:
    candidates: list[tuple[int, int]] = []
    for match in _ROOMS_DIGIT.finditer(text):
        # "7/17 эт" and "2 к.м" are not rooms; a digit right before "кв.м" neither.
        tail = text[match.end() : match.end() + 3].lower()
        if match.group(0).lower().rstrip().endswith("к") and tail.startswith((".м", " м", "в.м")):
            continue
        candidates.append((match.start(), int(match.group(1))))
    for match in _ROOMS_EURO.finditer(text):
        candidates.append((match.start(), int(match.group(1))))
    for match in _STUDIO.finditer(text):
        candidates.append((match.start(), 0))
    lowered = text.lower()
    for stem, rooms in _ROOM_WORDS.items():
        position = lowered.find(stem)
        if position >= 0 and (position == 0 or not lowered[position - 1].isalpha()):
            candidates.append((position, rooms))
    if not candidates:
        return None
    return min(candidates)[1]


# --- area and floor -----------------------------------------------------------------------------

_AREA = re.compile(
    r"(?<![\d.,])(\d{1,4}(?:[.,]\d{1,2})?)(?:\s*/\s*\d{1,3}(?:[.,]\d{1,2})?){0,2}\s*" + _AREA_UNIT,
    re.IGNORECASE,
)
_AREA_LABELLED = re.compile(
    r"(?:\bS\s*=?|площадь\w*|общ\.?(?:ая)?)\s*[:=\-–—]?\s*(\d{1,4}(?:[.,]\d{1,2})?)",
    re.IGNORECASE,
)
_KITCHEN = re.compile(r"(?:кухн\w*|жил\w*)\s*[:\-–—]?\s*$", re.IGNORECASE)


def find_area(text: str) -> Decimal | None:
    for match in _AREA.finditer(text):
        if _KITCHEN.search(text[max(0, match.start() - 12) : match.start()]):
            continue
        value = _decimal(match.group(1))
        if MIN_AREA_M2 <= value <= MAX_AREA_M2:
            return value
    for match in _AREA_LABELLED.finditer(text):
        value = _decimal(match.group(1))
        if MIN_AREA_M2 <= value <= MAX_AREA_M2:
            return value
    return None


_FLOOR_PATTERNS = (
    re.compile(r"(?<![\d/])(\d{1,3})\s*/\s*(\d{1,3})\s*(?:эт\b|эт\.|этаж\w*)", re.IGNORECASE),
    re.compile(r"\bэт(?:аж)?\.?\s*[:\-–—]?\s*(\d{1,3})\s*(?:/|из)\s*(\d{1,3})", re.IGNORECASE),
    re.compile(
        r"(?<![\d/])(\d{1,3})\s*(?:-?й|-?ом)?\s*(?:этаж(?!н)\w*|эт\b\.?)(?:\s*из\s*(\d{1,3}))?",
        re.IGNORECASE,
    ),
)


def find_floor(text: str) -> tuple[int | None, int | None]:
    for pattern in _FLOOR_PATTERNS:
        match = pattern.search(text)
        if match is None:
            continue
        floor = int(match.group(1))
        total = int(match.group(2)) if match.group(2) else None
        if total is not None and floor > total:
            continue
        return floor, total
    return None, None


# --- money --------------------------------------------------------------------------------------

_CURRENCY = r"(?:₽|руб\b\.?|рублей|рубля|р\.|rub\b|RUB\b)"
_MILLIONS = re.compile(
    r"(?<![\d.,])(\d{1,4}(?:[.,]\d{1,3})?)\s*(?:млн|миллион\w*|mln)\.?"
    r"(?:\s*(\d{1,3})\s*(?:тыс|т\b)\.?)?\s*" + _CURRENCY + "?",
    re.IGNORECASE,
)
_THOUSANDS = re.compile(
    r"(?<![\d.,])(\d{1,6})\s*(?:тыс|т\.р\b|к\b)\.?\s*" + _CURRENCY + "?", re.IGNORECASE
)
_RUBLES = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:[ .]\d{3})+|\d{4,10})(?:[.,]\d{2})?\s*" + _CURRENCY, re.IGNORECASE
)
_PRICE_LABELLED = re.compile(
    r"(?:цена|стоимость|стоит|за)\s*[:\-–—]?\s*(?:от\s*)?(\d{1,3}(?:[ .]\d{3})+|\d{6,10})\b",
    re.IGNORECASE,
)
_PER_METER_AFTER = re.compile(r"^\s*(?:/|за|в)\s*(?:1\s*)?(?:м|кв|метр)", re.IGNORECASE)
_PER_METER_BEFORE = re.compile(
    r"(?:за\s*(?:1\s*)?(?:м|кв|метр)\S*|/\s*м\S*)\s*[:\-–—]?\s*(?:от\s*)?$", re.IGNORECASE
)
_COMMISSION_WORD = re.compile(
    r"(?:комисси\w*|вознагражден\w*|\bКВ\b|агент\w*|бонус\w*|ПВ\b|взнос\w*|скидк\w*|бронь|брони\w*)"
    r"[^\n\d]{0,25}$",
    re.IGNORECASE,
)


def _money_candidates(text: str) -> list[tuple[int, int, int]]:
    """(start, end, rubles) of every money amount in `text`."""
    found: list[tuple[int, int, int]] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, value: int) -> None:
        if any(s < end and start < e for s, e in taken):
            return
        taken.append((start, end))
        found.append((start, end, value))

    for match in _MILLIONS.finditer(text):
        millions = _decimal(match.group(1)) * 1_000_000
        thousands = int(match.group(2)) * 1000 if match.group(2) else 0
        add(match.start(), match.end(), int(millions) + thousands)
    for match in _RUBLES.finditer(text):
        add(match.start(), match.end(), int(re.sub(r"[ .]", "", match.group(1))))
    for match in _THOUSANDS.finditer(text):
        add(match.start(), match.end(), int(match.group(1)) * 1000)
    for match in _PRICE_LABELLED.finditer(text):
        add(match.start(1), match.end(1), int(re.sub(r"[ .]", "", match.group(1))))
    return sorted(found)


def _is_price_context(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 30) : start]
    if _PER_METER_AFTER.match(text[end : end + 12]) or _PER_METER_BEFORE.search(before):
        return False
    return _COMMISSION_WORD.search(before) is None


def find_prices(text: str) -> list[int]:
    return [
        value
        for start, end, value in _money_candidates(text)
        if MIN_PRICE_RUB <= value <= MAX_PRICE_RUB and _is_price_context(text, start, end)
    ]


_COMMISSION_PERCENT = re.compile(
    r"(?:комисси\w*|вознагражден\w*|\bКВ\b|агентск\w*|агентам)[^\n%]{0,30}?(\d{1,2}(?:[.,]\d{1,2})?)\s*%",
    re.IGNORECASE,
)
_COMMISSION_AMOUNT = re.compile(
    r"(?:комисси\w*|вознагражден\w*|\bКВ\b|агентск\w*|агентам)\s*(?:агенту|агентам)?\s*[:\-–—]?\s*"
    r"(?:составляет\s*|до\s*)?(\d[\d ]*(?:[.,]\d+)?\s*(?:млн|тыс|т\.р|к)?\.?\s*" + _CURRENCY + "?)",
    re.IGNORECASE,
)


def find_commission(text: str) -> Commission | None:
    percent = _COMMISSION_PERCENT.search(text)
    if percent is not None:
        share = _decimal(percent.group(1))
        if Decimal(0) < share <= Decimal(20):
            return Commission(percent=share)
    amount = _COMMISSION_AMOUNT.search(text)
    if amount is not None:
        for _, _, value in _money_candidates(amount.group(1)):
            if 1000 <= value <= 50_000_000:
                return Commission(amount_rub=value)
    return None


# --- the post -----------------------------------------------------------------------------------


def _flat_from(text: str) -> Flat | None:
    prices = find_prices(text)
    if not prices:
        return None
    floor, total = find_floor(text)
    return Flat(find_rooms(text), find_area(text), prices[0], floor, total)


def parse_listing(text: str) -> Listing | Unparsed:
    if not text or not text.strip():
        return Unparsed("empty")
    text = normalise(text)
    complex_name = find_complex(text)
    if complex_name is None:
        return Unparsed("no_complex")
    commission = find_commission(text)
    flats: list[Flat] = []
    for line in text.split("\n"):
        if find_rooms(line) is None and find_area(line) is None:
            continue
        flat = _flat_from(line)
        if flat is not None:
            flats.append(flat)
    if len(flats) < 2:
        whole = _flat_from(text)
        flats = [whole] if whole is not None else []
    if not flats:
        return Unparsed("no_price")
    if all(flat.rooms is None and flat.area_m2 is None for flat in flats):
        return Unparsed("no_flat")
    return Listing(complex_name, tuple(flats), commission)
