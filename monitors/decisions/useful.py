"""Which chat messages are useful: hashtags, keywords and links, configurable from the environment.

USEFUL_HASHTAGS, USEFUL_KEYWORDS and USEFUL_LINK_DOMAINS are comma-separated lists; an empty
USEFUL_LINK_DOMAINS means any link counts. Matching ignores case and `ё`/`е`; keywords match whole
words or word prefixes ("ипотек" matches "ипотека", "ипотеки"). USEFUL_MIN_LENGTH keeps one-word
replies out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from runtime.config import Env

DEFAULT_HASHTAGS = ("полезное", "полезно", "useful", "лайфхак", "кейс", "юрист", "ипотека")
DEFAULT_KEYWORDS = (
    "ипотек",
    "ставк",
    "налогов",
    "вычет",
    "эскроу",
    "материнск",
    "договор долевого",
    "дду",
    "переуступк",
    "росреестр",
    "нотариус",
    "застройщик",
)

_HASHTAG = re.compile(r"#([\w]+)")
_LINK = re.compile(r"\bhttps?://[^\s<>\"')]+|\b(?:t\.me|www\.)[^\s<>\"')]+", re.IGNORECASE)


def _fold(text: str) -> str:
    return text.lower().replace("ё", "е")


def _split(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    return tuple(_fold(item.strip().lstrip("#")) for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class UsefulVerdict:
    useful: bool
    reasons: tuple[str, ...]  # e.g. ("hashtag:полезное", "keyword:ипотек", "link:t.me")


@dataclass(frozen=True)
class UsefulRules:
    hashtags: tuple[str, ...] = DEFAULT_HASHTAGS
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    #: Domains whose links count; empty: every link counts.
    link_domains: tuple[str, ...] = ()
    min_length: int = 20

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> UsefulRules:
        env = Env(environ)
        hashtags = _split(env.text("USEFUL_HASHTAGS"))
        keywords = _split(env.text("USEFUL_KEYWORDS"))
        domains = _split(env.text("USEFUL_LINK_DOMAINS"))
        return cls(
            hashtags=DEFAULT_HASHTAGS if hashtags is None else hashtags,
            keywords=DEFAULT_KEYWORDS if keywords is None else keywords,
            link_domains=() if domains is None else domains,
            min_length=env.integer("USEFUL_MIN_LENGTH", 20),
        )

    def classify(self, text: str | None) -> UsefulVerdict:
        if not text:
            return UsefulVerdict(False, ())
        folded = _fold(text)
        reasons: list[str] = []
        tags = {_fold(tag) for tag in _HASHTAG.findall(text)}
        # A hashtag is an explicit mark by the author: it counts even in a short message.
        reasons += [f"hashtag:{tag}" for tag in self.hashtags if tag in tags]
        if len(text.strip()) >= self.min_length:
            for keyword in self.keywords:
                if re.search(r"(?<!\w)" + re.escape(keyword), folded):
                    reasons.append(f"keyword:{keyword}")
            for link in _LINK.findall(text):
                domain = _link_domain(link)
                if domain and (not self.link_domains or _domain_allowed(domain, self.link_domains)):
                    reasons.append(f"link:{domain}")
        unique = tuple(dict.fromkeys(reasons))
        return UsefulVerdict(bool(unique), unique)


def _link_domain(link: str) -> str:
    if not link.lower().startswith(("http://", "https://")):
        link = "https://" + link
    host = urlsplit(link).hostname or ""
    return host.removeprefix("www.")


def _domain_allowed(domain: str, allowed: tuple[str, ...]) -> bool:
    return any(domain == item or domain.endswith("." + item) for item in allowed)
