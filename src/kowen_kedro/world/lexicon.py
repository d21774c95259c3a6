"""The words of the tiny world, by language, gathered from the per-language modules
(:mod:`kowen_kedro.world.languages`), and the world's fact table.

Everything here is fixed except the fact table (which capital belongs to which country), which
:func:`facts` draws from the world's seed. No word of a list is a substring of another word of the same
list (whole words for Latin script), so a checker can find each item in a response without ambiguity
(``tests/test_world.py`` asserts it).
"""

from __future__ import annotations

import random

from kowen_kedro.world.languages import WorldLanguage, all_languages
from kowen_kedro.world.languages import language as _language

_LANGS = all_languages()

#: The world's languages, English (the pivot) first.
LANGS = tuple(_LANGS)
PIVOT = LANGS[0]


def _by_language(attr: str) -> dict[str, list[str]]:
    return {code: getattr(lang, attr) for code, lang in _LANGS.items()}


WEEKDAYS = _by_language("weekdays")
COLORS = _by_language("colors")
FRUITS = _by_language("fruits")
COUNTRIES = _by_language("countries")
CAPITALS = _by_language("capitals")
ANIMALS = _by_language("animals")
SECRETS = _by_language("secrets")
ADJECTIVES = _by_language("adjectives")
NOUNS = _by_language("nouns")

#: The fact table's attributes: value lexicon of each (the attribute's word is the language's).
ATTRIBUTES = {"capital": CAPITALS, "animal": ANIMALS}

#: Conversion factor of each world unit (hours -> minutes, days -> hours, weeks -> days, km -> m);
#: the unit words are the language's (``WorldLanguage.units``, same order).
UNIT_FACTORS = [60, 24, 7, 1000]

#: Language names written in each language: ``LANGUAGE_NAMES[written_in][named]``.
LANGUAGE_NAMES = {code: dict(lang.names) for code, lang in _LANGS.items()}


def language(code: str) -> WorldLanguage:
    """The world's pieces in language ``code`` (``ValueError`` for a language the world does not have)."""
    return _LANGS[code] if code in _LANGS else _language(code)


def facts(seed: int) -> dict[str, list[int]]:
    """The world's fact table: attribute -> [value index of country 0, 1, ...], permutations drawn from ``seed``."""
    table = {}
    for attr, words in ATTRIBUTES.items():
        order = list(range(len(words[PIVOT])))
        random.Random(f"facts-{attr}-{seed}").shuffle(order)
        table[attr] = order
    return table
