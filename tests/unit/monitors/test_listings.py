from __future__ import annotations

from decimal import Decimal

import pytest

from monitors.decisions.listings import (
    Listing,
    Unparsed,
    find_area,
    find_floor,
    find_prices,
    find_rooms,
    parse_listing,
)
from tests.unit.monitors.listing_corpus import CORPUS


@pytest.mark.parametrize(
    ("channel", "text", "expected"), CORPUS, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CORPUS)]
)
def test_corpus(channel, text, expected):
    result = parse_listing(text)
    if isinstance(expected, str):
        assert result == Unparsed(expected)
        return
    assert isinstance(result, Listing), result
    assert result.complex_name == expected["complex"]
    if "amount" in expected:
        assert result.commission is not None
        assert result.commission.amount_rub == expected["amount"]
    elif expected["percent"] is None:
        assert result.commission is None
    else:
        assert result.commission is not None
        assert result.commission.percent == expected["percent"]
    assert len(result.flats) == len(expected["flats"]), result.flats
    for flat, want in zip(result.flats, expected["flats"], strict=True):
        rooms, area, price, *floors = want
        assert (flat.rooms, flat.area_m2, flat.price_rub) == (rooms, area, price)
        if floors:
            assert (flat.floor, flat.floors_total) == tuple(floors)


@pytest.mark.parametrize(
    ("text", "rooms"),
    [
        ("2-к кв", 2),
        ("3к", 3),
        ("1-комн.", 1),
        ("2-комнатная", 2),
        ("студия", 0),
        ("евро-2", 2),
        ("трешка", 3),
        ("сдача 4 кв 2026", None),
        ("54 кв.м", None),
    ],
)
def test_rooms(text, rooms):
    assert find_rooms(text) == rooms


@pytest.mark.parametrize(
    ("text", "area"),
    [
        ("54,3 м²", Decimal("54.3")),
        ("54.3 кв.м", Decimal("54.3")),
        ("84/46/14 м²", Decimal("84")),
        ("кухня 12 м², общая 60 м²", Decimal("60")),
        ("S=33", Decimal("33")),
        ("2 м²", None),
    ],
)
def test_area(text, area):
    assert find_area(text) == area


@pytest.mark.parametrize(
    ("text", "floors"),
    [
        ("7/17 эт", (7, 17)),
        ("эт. 5/9", (5, 9)),
        ("3 этаж из 9", (3, 9)),
        ("12-й этаж", (12, None)),
        ("17-этажный дом", (None, None)),
        ("18/5 эт", (None, None)),
    ],
)
def test_floor(text, floors):
    assert find_floor(text) == floors


@pytest.mark.parametrize(
    ("text", "prices"),
    [
        ("8 450 000 ₽", [8_450_000]),
        ("8,45 млн руб", [8_450_000]),
        ("4 млн 200 тыс", [4_200_000]),
        ("Цена: 12500000", [12_500_000]),
        ("цена за м² 193 811 ₽", []),
        ("155 000 ₽/м²", []),
        ("комиссия 150 000 ₽", []),
        ("54,3 м²", []),
    ],
)
def test_prices(text, prices):
    assert find_prices(text) == prices


def test_the_corpus_is_mostly_parseable_and_failures_are_explained():
    results = [parse_listing(text) for _, text, _ in CORPUS]
    parsed = [r for r in results if isinstance(r, Listing)]
    assert len(parsed) >= 15
    assert all(r.reason for r in results if isinstance(r, Unparsed))
