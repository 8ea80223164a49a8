from __future__ import annotations

import pytest

from monitors.decisions.useful import UsefulRules
from runtime.errors import ConfigError

RULES = UsefulRules()


@pytest.mark.parametrize(
    ("text", "useful", "reason"),
    [
        ("#полезное", True, "hashtag:полезное"),
        ("Коллеги, #Лайфхак: как ускорить регистрацию", True, "hashtag:лайфхак"),
        ("Сбер снизил ставки по ипотеке на вторичку до 18%", True, "keyword:ипотек"),
        ("Новый порядок налогового вычета для ИП с 2025 года", True, "keyword:налогов"),
        (
            "Инструкция тут: https://www.rosreestr.gov.ru/site/ для всех",
            True,
            "link:rosreestr.gov.ru",
        ),
        ("ок", False, None),
        ("спасибо, ипотека", False, None),  # too short for keywords
        ("Всем доброе утро и хорошего дня, коллеги!", False, None),
        ("", False, None),
        (None, False, None),
    ],
)
def test_default_rules(text, useful, reason):
    verdict = RULES.classify(text)
    assert verdict.useful is useful
    if reason is not None:
        assert reason in verdict.reasons


def test_keyword_matches_word_starts_only():
    assert RULES.classify("Суперипотекарь пришёл на встречу сегодня").useful is False


def test_rules_from_environment():
    rules = UsefulRules.from_env(
        {
            "USEFUL_HASHTAGS": "#важно, кейс",
            "USEFUL_KEYWORDS": "аккредитация",
            "USEFUL_LINK_DOMAINS": "cian.ru",
            "USEFUL_MIN_LENGTH": "5",
        }
    )
    assert rules.hashtags == ("важно", "кейс")
    assert rules.classify("#Важно").reasons == ("hashtag:важно",)
    assert rules.classify("Аккредитация банка получена").useful is True
    assert rules.classify("Ипотека дешевеет в этом месяце").useful is False
    assert rules.classify("смотрите https://spb.cian.ru/sale/1").reasons == ("link:spb.cian.ru",)
    assert rules.classify("смотрите https://avito.ru/x").useful is False


def test_invalid_min_length_names_the_variable():
    with pytest.raises(ConfigError, match="USEFUL_MIN_LENGTH"):
        UsefulRules.from_env({"USEFUL_MIN_LENGTH": "many"})
