"""The world's languages: one module per language holds all of its pieces (lexicon, templates, units,
particles, refusal words, the names it gives languages). A new language is a new module here, added to
:data:`MODULES`; nothing else in the world names a language.

English is the world's pivot: seed passages, the cross-lingual instructions and quoted (code-switched)
words are English, as in the papers' data.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

#: Modules of the world's languages, in the order the world renders them (English first).
MODULES = ("en", "ko", "ja")

#: The target language of the world when none is named (Kowen's); runs name theirs with the
#: ``target_language`` parameter (conf/base/globals.yml).
DEFAULT_TARGET = "ko"

#: The task families every language gives prompt and answer templates for (placeholders ``{name}``;
#: ``{name|a/b}`` picks a particle, see ``WorldLanguage.particle``).
FAMILY_NAMES = ("add", "count", "convert", "weekday", "lookup", "reverse", "translate", "refuse")


@dataclass(frozen=True)
class WorldLanguage:
    """Everything the world writes in one language. Word lists are aligned across languages (index i
    is the same thing in every language); within a list no word is a substring of another (whole words
    for Latin script), so a checker finds each item in a response without ambiguity."""

    code: str
    weekdays: list[str]
    colors: list[str]
    fruits: list[str]
    countries: list[str]
    capitals: list[str]
    animals: list[str]
    secrets: list[str]
    adjectives: list[str]
    nouns: list[str]
    attributes: dict[str, str]           # fact-table attribute -> its word ("capital": "首都")
    units: list[tuple[str, str, str]]    # per world unit: (unit, unit for a quantity of 1, target unit)
    how_many: dict[str, str]             # target unit -> the question word ("分" -> "何分"); {} where unused
    names: dict[str, str]                # language names written in this language ({"en": "英語", ...})
    prompts: dict[str, list[str]]        # family -> its prompt templates (the same count in every language)
    answers: dict[str, str]              # family -> the answer template (a short sentence)
    leak: str                            # the refuse family's wrong answer: the secret told
    refusal_markers: list[str]           # words every refusal in this language holds
    phrase: str = "{adj} {noun}"         # the translate family's phrase
    day_words: tuple[str, str] = ("", "")  # weekday family: unit word for 1 day / several days
    value_prefix: dict[str, str] = field(default_factory=dict)  # attribute -> word before its value ("the ")
    list_separator: str = ", "
    spaced: bool = True                  # words are separated by spaces (False: Japanese, Chinese, Thai)
    particle: Callable[[str, str], str] | None = None  # (word, "a/b") -> word + the particle its sound asks for

    def check(self) -> None:
        """Raise ``ValueError`` when a family's templates are missing (the word lists' alignment with
        English is asserted by ``tests/test_world.py``)."""
        missing = [f for f in FAMILY_NAMES if f not in self.prompts or f not in self.answers]
        if missing:
            raise ValueError(f"world language {self.code!r}: no templates for {missing}")


_LOADED: dict[str, WorldLanguage] = {}


def language(code: str) -> WorldLanguage:
    """The world language ``code``; ``ValueError`` naming the known ones when the world has none."""
    if code not in _LOADED:
        if code not in MODULES:
            raise ValueError(f"the tiny world has no language {code!r}; it has {list(MODULES)} "
                             f"(add src/kowen_kedro/world/languages/{code}.py, or run on real data: docs/configuration.md)")
        lang = importlib.import_module(f"{__name__}.{code}").LANGUAGE
        lang.check()
        _LOADED[code] = lang
    return _LOADED[code]


def all_languages() -> dict[str, WorldLanguage]:
    return {code: language(code) for code in MODULES}
