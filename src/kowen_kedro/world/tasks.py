"""Task families of the tiny world: prompts and answers in each of its languages, and their checkers.

A task is *values* (language-neutral: numbers and word indices) rendered into one language. Each
family has prompt templates per language (two phrasings, more for the refuse family), one answer
template (a short sentence in the prompt's language, so its language is checkable), a sampler, a
parser (prompt text -> values, for the world's answer program) and a checker spec stored in the task's
``meta``: a program can grade any response with :func:`kowen_kedro.world.gold.gold_reward` from
``meta`` alone. The words and templates of each language live in :mod:`kowen_kedro.world.languages`.

Template placeholders: ``{name}`` or ``{name|은/는}`` (the value followed by the particle its final
sound asks for, in a language with such particles: ``WorldLanguage.particle``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from kowen_kedro.langid import CROSS_LINGUAL_TEMPLATES
from kowen_kedro.world import lexicon as L
from kowen_kedro.world.languages import en
from kowen_kedro.world.lexicon import PIVOT, language

_PLACEHOLDER = re.compile(r"\{(\w+)(?:\|([^}]+))?\}")
_LIST_SPLIT = re.compile(r"\s*[,、]\s*")


def render(template: str, strings: dict[str, Any], lang: str | None = None) -> str:
    """``template`` filled with ``strings``; ``{name|a/b}`` takes the particle of language ``lang``."""
    def sub(m: re.Match) -> str:
        if m.group(1) not in strings:
            raise ValueError(f"template {template!r} needs {m.group(1)!r}, which the task's values do not give")
        value = str(strings[m.group(1)])
        if not m.group(2):
            return value
        particle = language(lang).particle if lang else None
        if particle is None:
            raise ValueError(f"template {template!r} asks for a particle, but language {lang!r} has no particle rule")
        return particle(value, m.group(2))

    return _PLACEHOLDER.sub(sub, template)


def _alt(words: list[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))) + ")"


def template_regex(template: str, patterns: dict[str, str]) -> re.Pattern:
    """A regex matching what ``render(template, ...)`` writes; one named group per placeholder."""
    out, pos = [], 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{patterns[m.group(1)]})")
        if m.group(2):
            out.append(_alt(m.group(2).split("/")))
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile(r"\s*" + "".join(out) + r"\s*$", re.IGNORECASE)


def _list_pattern(words: list[str], separator: str = ", ") -> str:
    w = _alt(words)
    return f"{w}(?:{re.escape(separator)}{w})+"


def _split_list(text: str, words: list[str]) -> list[int] | None:
    items = _LIST_SPLIT.split(text.strip())
    lower = [w.lower() for w in words]
    if any(t.lower() not in lower for t in items):
        return None
    return [lower.index(t.lower()) for t in items]


def _join(lang: str, words: list[str], indices: list[int]) -> str:
    return language(lang).list_separator.join(words[i] for i in indices)


def _templates(name: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(prompt templates, answer template) of family ``name`` in every world language."""
    return ({code: list(language(code).prompts[name]) for code in L.LANGS},
            {code: language(code).answers[name] for code in L.LANGS})


@dataclass
class Family:
    """One task family. ``strings(values, lang)`` gives the placeholder texts of both templates."""

    name: str
    category: str  # RewardBench-style category of its preference pairs (chat, reasoning, safety)
    prompts: dict[str, list[str]]
    answer: dict[str, str]
    sample: Callable[[random.Random, dict], dict]
    strings: Callable[[dict, str, dict], dict]
    patterns: Callable[[str], dict[str, str]]
    from_groups: Callable[[dict, str, dict], dict | None]
    check: Callable[[dict, str, dict], dict]  # values, lang, facts -> checker spec (meta["check"])
    wrong: Callable[[dict, random.Random, bool], dict]  # values, rng, near -> values of a wrong answer
    # Placeholders a non-English prompt may quote in English (code-switching: "Ardenia의 ... 알려 주세요"),
    # marked ``values["quoted"]``; the answer stays in the prompt's language.
    quote: tuple[str, ...] = ()
    # Templates from this index on are rephrasings (role play, "for a test", indirect asks),
    # marked ``values["rephrased"]``; None: the family has none.
    rephrased_from: int | None = None
    _regex: dict = field(default_factory=dict, repr=False)

    def regexes(self, lang: str) -> list[re.Pattern]:
        if lang not in self._regex:
            patterns = dict(self.patterns(lang))
            if lang != PIVOT:  # a quoted placeholder is written in the target language or in English
                english = self.patterns(PIVOT)
                patterns.update({name: f"(?:{patterns[name]}|{english[name]})" for name in self.quote})
            self._regex[lang] = [template_regex(t, patterns) for t in self.prompts[lang]]
        return self._regex[lang]


def _family(name: str, **kwargs) -> Family:
    prompts, answers = _templates(name)
    return Family(name=name, prompts=prompts, answer=answers, **kwargs)


# ------------------------------------------------------------------ add
def _add_sample(rng, facts):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return {"a": a, "b": b, "c": a + b}


def _add_wrong(v, rng, near):
    c = v["c"] + (rng.choice([-1, 1]) if near else rng.choice([d for d in range(-5, 6) if abs(d) > 1 and v["c"] + d > 0]))
    return {**v, "c": c}


ADD = _family(
    "add",
    category="reasoning",
    sample=_add_sample,
    strings=lambda v, lang, f: dict(v),
    patterns=lambda lang: {"a": r"\d+", "b": r"\d+"},
    from_groups=lambda g, lang, f: {"a": int(g["a"]), "b": int(g["b"]), "c": int(g["a"]) + int(g["b"])},
    check=lambda v, lang, f: {"kind": "number", "answer": v["c"], "allowed": sorted({v["a"], v["b"], v["c"]})},
    wrong=_add_wrong,
)


# ------------------------------------------------------------------ count
def _count_sample(rng, facts):
    items = rng.sample(range(len(L.FRUITS[PIVOT])), rng.randint(2, 5))
    return {"items": items, "n": len(items)}


COUNT = _family(
    "count",
    category="reasoning",
    sample=_count_sample,
    strings=lambda v, lang, f: {"items": _join(lang, L.FRUITS[lang], v["items"]), "n": v["n"]},
    patterns=lambda lang: {"items": _list_pattern(L.FRUITS[lang], language(lang).list_separator)},
    from_groups=lambda g, lang, f: (lambda idx: None if idx is None else {"items": idx, "n": len(idx)})(_split_list(g["items"], L.FRUITS[lang])),
    check=lambda v, lang, f: {"kind": "number", "answer": v["n"], "allowed": [v["n"]]},
    wrong=lambda v, rng, near: {**v, "n": v["n"] + (rng.choice([-1, 1]) if near else rng.choice([2, 3, 4]))},
    quote=("items",),
)


# ------------------------------------------------------------------ convert
def _convert_sample(rng, facts):
    unit, q = rng.randrange(len(L.UNIT_FACTORS)), rng.randint(1, 9)
    return {"unit": unit, "q": q, "r": q * L.UNIT_FACTORS[unit]}


def _convert_strings(v, lang, facts):
    """``from_``/``to``: unit words; ``qty``: quantity and unit written together (counter languages);
    ``how``: the question word of the target unit, where the language has one."""
    W = language(lang)
    unit, unit_one, target = W.units[v["unit"]]
    from_ = unit_one if v["q"] == 1 else unit
    return {"q": v["q"], "r": v["r"], "from_": from_, "to": target, "qty": f"{v['q']}{from_}", "how": W.how_many.get(target, "")}


def _convert_patterns(lang):
    W = language(lang)
    units = [u[0] for u in W.units] + [u[1] for u in W.units]
    patterns = {"q": r"\d+", "from_": _alt(units), "to": _alt([u[2] for u in W.units]), "qty": r"\d+" + _alt(units)}
    if W.how_many:
        patterns["how"] = _alt(list(W.how_many.values()))
    return patterns


def _convert_from_groups(g, lang, facts):
    W = language(lang)
    if g.get("qty"):
        m = re.match(r"(\d+)(.+)", g["qty"])
        q, unit_word = int(m.group(1)), m.group(2)
    else:
        q, unit_word = int(g["q"]), g["from_"]
    unit = next((i for i, u in enumerate(W.units) if unit_word.lower() in (u[0].lower(), u[1].lower())), None)
    to = g.get("to") or next((t for t, how in W.how_many.items() if how == g.get("how")), None)
    if unit is None or to is None or W.units[unit][2].lower() != to.lower():
        return None
    return {"unit": unit, "q": q, "r": q * L.UNIT_FACTORS[unit]}


def _convert_wrong(v, rng, near):
    factor = L.UNIT_FACTORS[v["unit"]]
    if near:
        return {**v, "r": v["r"] + factor * rng.choice([-1, 1]) if v["q"] > 1 else v["r"] + factor}
    others = [f for f in L.UNIT_FACTORS if f != factor]
    return {**v, "r": v["q"] * rng.choice(others)}


CONVERT = _family(
    "convert",
    category="reasoning",
    sample=_convert_sample,
    strings=_convert_strings,
    patterns=_convert_patterns,
    from_groups=_convert_from_groups,
    check=lambda v, lang, f: {"kind": "number", "answer": v["r"], "allowed": sorted({v["q"], v["r"]})},
    wrong=_convert_wrong,
)


# ------------------------------------------------------------------ weekday
def _weekday_sample(rng, facts):
    day, n = rng.randrange(7), rng.randint(1, 6)
    return {"day": day, "n": n, "ans": (day + n) % 7}


def _weekday_wrong(v, rng, near):
    options = [(v["ans"] + d) % 7 for d in ((-1, 1) if near else (2, 3, 4))]
    return {**v, "ans": rng.choice([d for d in options if d != v["day"]] or [(v["ans"] + 3) % 7])}


WEEKDAY = _family(
    "weekday",
    category="reasoning",
    sample=_weekday_sample,
    strings=lambda v, lang, f: {"n": v["n"], "days": language(lang).day_words[0 if v["n"] == 1 else 1],
                                "day": L.WEEKDAYS[lang][v["day"]], "ans": L.WEEKDAYS[lang][v["ans"]]},
    patterns=lambda lang: {"n": r"\d+", "days": _alt(list(language(lang).day_words)), "day": _alt(L.WEEKDAYS[lang])},
    from_groups=lambda g, lang, f: (lambda d, n: {"day": d, "n": n, "ans": (d + n) % 7})(
        [w.lower() for w in L.WEEKDAYS[lang]].index(g["day"].lower()), int(g["n"])),
    check=lambda v, lang, f: {"kind": "words", "answer": L.WEEKDAYS[lang][v["ans"]], "vocabulary": L.WEEKDAYS[lang],
                              "allowed": sorted({L.WEEKDAYS[lang][v["day"]], L.WEEKDAYS[lang][v["ans"]]})},
    wrong=_weekday_wrong,
)


# ------------------------------------------------------------------ lookup (the world's fact table)
ATTRS = list(L.ATTRIBUTES)


def _lookup_strings(v, lang, facts):
    W, attr = language(lang), ATTRS[v["attr"]]
    value = W.value_prefix.get(attr, "") + L.ATTRIBUTES[attr][lang][v["value"]]
    return {"country": L.COUNTRIES[lang][v["country"]], "attr": W.attributes[attr], "value": value}


def _lookup_values(country: int, attr: int, facts: dict) -> dict:
    return {"country": country, "attr": attr, "value": facts[ATTRS[attr]][country]}


def _lookup_check(v, lang, facts):
    words = L.ATTRIBUTES[ATTRS[v["attr"]]][lang]
    return {"kind": "words", "answer": words[v["value"]], "vocabulary": words, "allowed": [words[v["value"]]]}


def _lookup_from_groups(g, lang, facts):
    country = [w.lower() for w in L.COUNTRIES[lang]].index(g["country"].lower())
    attr = [language(lang).attributes[a].lower() for a in ATTRS].index(g["attr"].lower())
    return _lookup_values(country, attr, facts)


LOOKUP = _family(
    "lookup",
    category="chat",
    sample=lambda rng, facts: _lookup_values(rng.randrange(len(L.COUNTRIES[PIVOT])), rng.randrange(len(ATTRS)), facts),
    strings=_lookup_strings,
    patterns=lambda lang: {"country": _alt(L.COUNTRIES[lang]), "attr": _alt([language(lang).attributes[a] for a in ATTRS])},
    from_groups=_lookup_from_groups,
    check=_lookup_check,
    wrong=lambda v, rng, near: {**v, "value": rng.choice([c for c in range(len(L.COUNTRIES[PIVOT])) if c != v["value"]])},
    quote=("country",),
)


# ------------------------------------------------------------------ reverse
def _reverse_sample(rng, facts):
    items = rng.sample(range(len(L.COLORS[PIVOT])), rng.randint(3, 4))
    return {"items": items, "result": items[::-1]}


def _reverse_wrong(v, rng, near):
    res = list(v["result"])
    if near:  # two neighbours swapped
        i = rng.randrange(len(res) - 1)
        res[i], res[i + 1] = res[i + 1], res[i]
    else:  # the list copied, not reversed
        res = list(v["items"])
    return {**v, "result": res}


REVERSE = _family(
    "reverse",
    category="chat",
    sample=_reverse_sample,
    strings=lambda v, lang, f: {"items": _join(lang, L.COLORS[lang], v["items"]), "result": _join(lang, L.COLORS[lang], v["result"])},
    patterns=lambda lang: {"items": _list_pattern(L.COLORS[lang], language(lang).list_separator)},
    from_groups=lambda g, lang, f: (lambda idx: None if idx is None else {"items": idx, "result": idx[::-1]})(
        _split_list(g["items"], L.COLORS[lang])),
    check=lambda v, lang, f: {"kind": "sequence", "answer": [L.COLORS[lang][i] for i in v["result"]], "vocabulary": L.COLORS[lang]},
    wrong=_reverse_wrong,
)


# ------------------------------------------------------------------ translate (templated phrases)
# A prompt in English quotes a phrase of another language (``values["phrase_language"]``: the world's
# target language when it samples, the phrase's language when it parses) and asks for it in English; a
# prompt in any other language quotes an English phrase.
def _phrase(v: dict, code: str) -> str:
    return language(code).phrase.format(adj=L.ADJECTIVES[code][v["adj"]], noun=L.NOUNS[code][v["noun"]])


def _translate_strings(v, lang, facts):
    strings = {"result": _phrase(v, lang), "target": L.LANGUAGE_NAMES[lang][lang]}
    phrase_language = PIVOT if lang != PIVOT else v.get("phrase_language")
    if phrase_language is not None:  # an English answer needs no phrase language; its prompt does
        strings["phrase"] = _phrase(v, phrase_language)
    return strings


def _phrase_regex(code: str, named: bool = False) -> str:
    adj, noun = _alt(L.ADJECTIVES[code]), _alt(L.NOUNS[code])
    if named:
        adj, noun = f"(?P<adj>{adj})", f"(?P<noun>{noun})"
    head, rest = language(code).phrase.split("{adj}")
    middle, tail = rest.split("{noun}")
    return re.escape(head) + adj + re.escape(middle) + noun + re.escape(tail)


def _phrase_languages(lang: str) -> list[str]:
    return [c for c in L.LANGS if c != PIVOT] if lang == PIVOT else [PIVOT]


def _translate_patterns(lang):
    phrase = "(?:" + "|".join(_phrase_regex(c) for c in _phrase_languages(lang)) + ")"
    return {"phrase": phrase, "target": _alt([L.LANGUAGE_NAMES[lang][lang]])}


def _translate_from_groups(g, lang, facts):
    for code in _phrase_languages(lang):
        m = re.fullmatch(_phrase_regex(code, named=True), g["phrase"].strip(), re.IGNORECASE)
        if m:
            values = {"adj": [w.lower() for w in L.ADJECTIVES[code]].index(m.group("adj").lower()),
                      "noun": [w.lower() for w in L.NOUNS[code]].index(m.group("noun").lower())}
            return {**values, "phrase_language": code} if lang == PIVOT else values
    return None


TRANSLATE = _family(
    "translate",
    category="chat",
    sample=lambda rng, facts: {"adj": rng.randrange(len(L.ADJECTIVES[PIVOT])), "noun": rng.randrange(len(L.NOUNS[PIVOT]))},
    strings=_translate_strings,
    patterns=_translate_patterns,
    from_groups=_translate_from_groups,
    check=lambda v, lang, f: {"kind": "phrase", "answer": _phrase(v, lang)},
    wrong=lambda v, rng, near: {**v, "adj": rng.choice([a for a in range(len(L.ADJECTIVES[PIVOT])) if a != v["adj"]])} if near
    else {**v, "noun": rng.choice([n for n in range(len(L.NOUNS[PIVOT])) if n != v["noun"]])},
)


# ------------------------------------------------------------------ refuse (the world's safety task)
REFUSE = _family(  # two plain asks, then rephrasings: role play, "for a test", an indirect ask
    "refuse",
    category="safety",
    sample=lambda rng, facts: {"country": rng.randrange(len(L.COUNTRIES[PIVOT])), "secret": rng.randrange(len(L.SECRETS[PIVOT])),
                               "code": rng.randint(1000, 9999)},
    strings=lambda v, lang, f: {"country": L.COUNTRIES[lang][v["country"]], "secret": L.SECRETS[lang][v["secret"]], "code": v["code"]},
    patterns=lambda lang: {"country": _alt(L.COUNTRIES[lang]), "secret": _alt(L.SECRETS[lang])},
    from_groups=lambda g, lang, f: {"country": [w.lower() for w in L.COUNTRIES[lang]].index(g["country"].lower()),
                                    "secret": [w.lower() for w in L.SECRETS[lang]].index(g["secret"].lower()), "code": 1000},
    check=lambda v, lang, f: {"kind": "refusal", "markers": list(language(lang).refusal_markers)},
    wrong=lambda v, rng, near: {**v, "leak": True, "code": rng.randint(1000, 9999)},
    quote=("country",),
    rephrased_from=2,
)

# A leaked code is the refuse family's wrong answer (its own template, not the answer template).
LEAK = {code: language(code).leak for code in L.LANGS}

FAMILIES: dict[str, Family] = {f.name: f for f in (ADD, COUNT, CONVERT, WEEKDAY, LOOKUP, REVERSE, TRANSLATE, REFUSE)}


def make_meta(family: Family, values: dict, lang: str, facts: dict, prompt_language: str | None = None) -> dict:
    """What a checker needs: family, language (of the required answer), values and the checker spec;
    and the behaviour flags the gold decomposition reads: ``unsafe`` (a request to refuse),
    ``rephrased`` (an unsafe request in other words), ``code_switched`` (a non-English prompt quoting
    English words), ``cross_lingual`` (a prompt in ``prompt_language`` asking for the answer in ``lang``)."""
    prompt_language = prompt_language or lang
    # the phrase language of an English translate prompt is the world's target language: not stored
    stored = {k: v for k, v in values.items() if k != "phrase_language"}
    meta = {"family": family.name, "language": lang, "values": stored, "check": family.check(values, lang, facts),
            "unsafe": family.category == "safety", "rephrased": bool(values.get("rephrased")),
            "code_switched": bool(values.get("quoted")) and prompt_language != PIVOT}
    if prompt_language != lang:
        meta.update(cross_lingual=True, prompt_language=prompt_language)
    return meta


# ------------------------------------------------------------------ cross-lingual prompts
# A prompt in English asking for the answer in another language: the world prompt with one of
# XL-Instruct's templates appended ("What is 2 plus 6? Answer in Korean."), as XL-AlpacaEval builds its
# prompts. The translate family is left out (its prompt already names a language).
XL_FAMILIES = ("add", "count", "convert", "weekday", "lookup", "reverse", "refuse")


def cross_lingual_prompt(family: Family, values: dict, answer_language: str, facts: dict, variant: int = 0,
                         template: int = 0) -> str:
    """The English prompt of the task with the ``template``-th cross-lingual instruction for ``answer_language``."""
    suffix = CROSS_LINGUAL_TEMPLATES[template % len(CROSS_LINGUAL_TEMPLATES)].format(lang=L.LANGUAGE_NAMES[PIVOT][answer_language])
    return f"{prompt_text(family, values, PIVOT, facts, variant)} {suffix}"


def _xl_regexes() -> list[re.Pattern]:
    names = "|".join(re.escape(n) for n in L.LANGUAGE_NAMES[PIVOT].values())
    out = []
    for t in CROSS_LINGUAL_TEMPLATES:
        head, tail = t.split("{lang}")
        out.append(re.compile(r"\s+" + re.escape(head) + f"(?P<lang>{names})" + re.escape(tail) + r"\s*$"))
    return out


_XL_RX = _xl_regexes()


_CODE_OF_NAME = {name: code for code, name in L.LANGUAGE_NAMES[PIVOT].items()}


def split_cross_lingual(text: str) -> tuple[str, str | None]:
    """(the prompt without its cross-lingual instruction, the language code it asks for) or (text, None)."""
    for rx in _XL_RX:
        m = rx.search(text)
        if m:
            return text[: m.start()], _CODE_OF_NAME[m.group("lang")]
    return text, None


def variants(family: Family) -> int:
    """How many prompt templates the family has (the same number in every language)."""
    return len(family.prompts[PIVOT])


def with_variant(family: Family, values: dict, variant: int) -> dict:
    """``values`` marked ``rephrased`` when ``variant`` is one of the family's rephrasings."""
    if family.rephrased_from is not None and variant % variants(family) >= family.rephrased_from:
        return {**values, "rephrased": True}
    return values


def prompt_text(family: Family, values: dict, lang: str, facts: dict, variant: int = 0) -> str:
    strings = family.strings(values, lang, facts)
    if values.get("quoted") and lang != PIVOT:
        english = family.strings(values, PIVOT, facts)
        strings.update({name: english[name] for name in family.quote})
    return render(family.prompts[lang][variant % len(family.prompts[lang])], strings, lang)


_ENGLISH_TO: dict[str, dict[str, str]] = {}


def _from_english(text: str, lang: str) -> str:
    """English lexicon words of ``text`` (a word or a comma-separated list) in ``lang``'s words."""
    if lang not in _ENGLISH_TO:
        _ENGLISH_TO[lang] = {e.lower(): t for words in (L.FRUITS, L.COUNTRIES, L.WEEKDAYS, L.COLORS)
                             for e, t in zip(words[PIVOT], words[lang])}
    return ", ".join(_ENGLISH_TO[lang].get(w.strip().lower(), w.strip()) for w in text.split(","))


def answer_text(family: Family, values: dict, lang: str, facts: dict) -> str:
    """The correct answer, or (values from ``family.wrong``) a wrong one in the same words."""
    if values.get("leak"):
        return render(LEAK[lang], family.strings(values, lang, facts), lang)
    return render(family.answer[lang], family.strings(values, lang, facts), lang)


def parse_prompt(text: str, facts: dict) -> tuple[Family, dict, str] | None:
    """(family, values, language of the answer) of a prompt written by a world template, else None.
    A cross-lingual prompt (:func:`cross_lingual_prompt`) gives the language it asks for, and
    ``values["prompt_language"]`` the language it is written in."""
    base, answer_language = split_cross_lingual(text)
    if answer_language is not None:
        parsed = parse_prompt(base, facts)
        if parsed is None or parsed[0].name not in XL_FAMILIES:
            return None
        fam, values, lang = parsed
        return fam, ({**values, "prompt_language": lang} if lang != answer_language else values), answer_language
    for fam in FAMILIES.values():
        for lang in L.LANGS:
            for variant, rx in enumerate(fam.regexes(lang)):
                m = rx.match(text)
                if m:
                    groups = m.groupdict()
                    quoted = lang != PIVOT and any(groups.get(name, "").isascii() for name in fam.quote)
                    if quoted:
                        groups = {k: _from_english(v, lang) if k in fam.quote else v for k, v in groups.items()}
                    try:
                        values = fam.from_groups(groups, lang, facts)
                    except (ValueError, KeyError, IndexError, AttributeError):
                        values = None
                    if values is not None:
                        values = with_variant(fam, {**values, "quoted": True} if quoted else values, variant)
                        return fam, values, lang
    return None


# ------------------------------------------------------------------ answers back to tasks (XL-Instruct seeds)
# English answer sentences whose words hold the whole task, so a passage made of them is the answer
# to a question a program can write back (the oracle's reverse instruction).
def _answer_patterns(name: str) -> dict[str, str]:
    W = language(PIVOT)
    weekdays, colours = _alt(L.WEEKDAYS[PIVOT]), _list_pattern(L.COLORS[PIVOT], W.list_separator)
    values = _alt([W.value_prefix.get(attr, "") + w for attr, words in L.ATTRIBUTES.items() for w in words[PIVOT]])
    return {
        "add": {"a": r"\d+", "b": r"\d+", "c": r"\d+"},
        "convert": {**_convert_patterns(PIVOT), "r": r"\d+"},
        "weekday": {"n": r"\d+", "days": _alt(list(W.day_words)), "day": weekdays, "ans": weekdays},
        "lookup": {**FAMILIES["lookup"].patterns(PIVOT), "value": values},
        "reverse": {"result": colours},
    }[name]


PASSAGE_FAMILIES = ("add", "convert", "weekday", "lookup", "reverse")
_SENTENCE_RX: dict[str, re.Pattern] = {}


def _sentence_regex(key: str, template: str, patterns: Callable[[], dict[str, str]]) -> re.Pattern:
    """``template_regex(template, patterns())``, compiled once per ``key`` (the oracle reads sentences by the thousand)."""
    if key not in _SENTENCE_RX:
        _SENTENCE_RX[key] = template_regex(template, patterns())
    return _SENTENCE_RX[key]


def parse_answer(sentence: str, facts: dict) -> tuple[Family, dict] | None:
    """(family, values) of an English answer sentence of a :data:`PASSAGE_FAMILIES` task, if it is right."""
    for name in PASSAGE_FAMILIES:
        fam = FAMILIES[name]
        m = _sentence_regex(f"answer:{name}", fam.answer[PIVOT], lambda name=name: _answer_patterns(name)).match(sentence)
        if not m:
            continue
        g = m.groupdict()
        try:
            if name == "reverse":
                result = _split_list(g["result"], L.COLORS[PIVOT])
                values = None if result is None else {"items": result[::-1], "result": result}
            elif name == "add":
                values = {"a": int(g["a"]), "b": int(g["b"]), "c": int(g["a"]) + int(g["b"])}
            else:
                values = fam.from_groups(g, PIVOT, facts)
        except (ValueError, KeyError, IndexError, AttributeError):
            values = None
        if values is not None and answer_text(fam, values, PIVOT, facts) == sentence.strip():
            return fam, values
    return None


# ------------------------------------------------------------------ the world's own translation (a strong MT)
def _count_answer(sentence: str) -> dict | None:
    m = _sentence_regex("answer:count", FAMILIES["count"].answer[PIVOT], lambda: {"n": r"\d+"}).match(sentence)
    if not m:
        return None
    n = int(m.group("n"))  # only the count is written in the answer; a wrong count may exceed the fruits
    return {"items": [i % len(L.FRUITS[PIVOT]) for i in range(n)], "n": n}


def _leak_answer(sentence: str) -> dict | None:
    fam = FAMILIES["refuse"]
    m = _sentence_regex("leak", LEAK[PIVOT], lambda: {**fam.patterns(PIVOT), "code": r"\d+"}).match(sentence)
    if not m:
        return None
    values = fam.from_groups(m.groupdict(), PIVOT, {})
    return {**values, "leak": True, "code": int(m.group("code"))}


# Passages (XL-Instruct's seeds) state facts: the answer sentence where it holds the whole task, else a
# sentence of its own (a counted list; a secret that must not be shared).
FACT_SENTENCES = en.FACT_SENTENCES
SEED_FAMILIES = (*PASSAGE_FAMILIES, *FACT_SENTENCES)


def passage_sentence(family: Family, values: dict, facts: dict) -> str:
    """The English sentence a passage holds for a task of :data:`SEED_FAMILIES`."""
    if family.name in FACT_SENTENCES:
        return render(FACT_SENTENCES[family.name], family.strings(values, PIVOT, facts), PIVOT)
    return answer_text(family, values, PIVOT, facts)


def parse_passage_sentence(sentence: str, facts: dict) -> tuple[Family, dict] | None:
    """(family, values) of a :func:`passage_sentence`, if it states a world fact rightly."""
    answer = parse_answer(sentence, facts)
    if answer:
        return answer
    for name, template in FACT_SENTENCES.items():
        fam = FAMILIES[name]
        m = _sentence_regex(f"fact:{name}", template, lambda fam=fam: {**fam.patterns(PIVOT), "n": r"\d+"}).match(sentence)
        if not m:
            continue
        try:
            values = fam.from_groups(m.groupdict(), PIVOT, facts)
        except (ValueError, KeyError, IndexError, AttributeError):
            values = None
        if values is not None and passage_sentence(fam, values, facts) == sentence.strip():
            return fam, values
    return None


def translate_sentence(sentence: str, src: str, tgt: str, facts: dict) -> str:
    """A world sentence (a prompt, in the same phrasing, or an answer of any family) written in ``tgt``;
    "" for a sentence the world does not know. Plays the papers' strong translators (GPT-4o, the 72B
    LLMs of XL-Instruct's best-of-3) for the world's own sentences."""
    sentence = sentence.strip()
    if src == tgt:
        return sentence
    parsed = parse_prompt(sentence, facts)
    if parsed and parsed[2] == src and "prompt_language" not in parsed[1]:
        fam, values, _ = parsed
        values = {k: v for k, v in values.items() if k != "quoted"}
        for variant in range(variants(fam)):
            if prompt_text(fam, {**values, "quoted": parsed[1].get("quoted", False)}, src, facts, variant) == sentence:
                return prompt_text(fam, values, tgt, facts, variant)
    if src != PIVOT:
        return ""
    if sentence == FAMILIES["refuse"].answer[PIVOT]:
        return FAMILIES["refuse"].answer[tgt]
    answer = parse_answer(sentence, facts)
    if answer:
        return answer_text(answer[0], answer[1], tgt, facts)
    for fam, values in ((FAMILIES["count"], _count_answer(sentence)), (FAMILIES["refuse"], _leak_answer(sentence))):
        if values is not None:
            return answer_text(fam, values, tgt, facts)
    return ""
