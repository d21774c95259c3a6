"""Write the tiny world's default raw inputs (in their real formats) and its held-out gold set.

:func:`build_world` returns ``{part: [records]}``; :func:`write_world` writes one JSONL file per part
(atomically, with a ``world.json`` stamp) and is skipped when the stamp matches. Parts:

* ``user_prompts`` - LMSYS-Chat-style conversations (single-turn, and a few two-turn ones);
* ``preference_pairs`` - (prompt, chosen, rejected) with RewardBench categories (chat, chat_hard,
  safety, reasoning): rejected = a wrong answer, a near miss, or the right answer in the wrong language;
* ``seed_passages`` - English passages describing the world's facts (XL-Instruct seeds);
* ``eval_prompts`` (AlpacaEval format), ``mt_bench_prompts`` (two turns, references for math and
  reasoning), ``nlu_mc`` (4-choice), ``parallel_sentences`` (English/target pairs for the MT and QE models);
* ``gold_prompts``, ``gold_pairs``, ``gold_translations`` - the held-out gold set: no prompt text of
  it occurs in any other part. Each gold row carries the ``meta`` its checker needs.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kowen_kedro.world import lexicon as L
from kowen_kedro.world.languages import DEFAULT_TARGET
from kowen_kedro.world.lexicon import PIVOT
from kowen_kedro.world.gold import gold_reward
from kowen_kedro.world.oracle import reverse_question
from kowen_kedro.langid import CROSS_LINGUAL_TEMPLATES
from kowen_kedro.world.tasks import (
    FAMILIES,
    SEED_FAMILIES,
    XL_FAMILIES,
    Family,
    answer_text,
    cross_lingual_prompt,
    make_meta,
    passage_sentence,
    prompt_text,
    variants,
    with_variant,
)

VERSION = 5
STAMP = "world.json"
MT_BENCH_CATEGORY = {"add": "math", "convert": "math", "count": "reasoning", "weekday": "reasoning",
                     "lookup": "humanities", "reverse": "extraction", "translate": "writing", "refuse": "roleplay"}
PARTS = ("user_prompts", "preference_pairs", "seed_passages", "eval_prompts", "mt_bench_prompts", "nlu_mc",
         "parallel_sentences", "gold_prompts", "gold_pairs", "gold_translations")


@dataclass
class WorldSizes:
    """Rows per language of each part (``params:tiny_world.sizes``)."""

    user_prompts: int = 400       # English; other languages get `target_prompt_share` of it
    target_prompt_share: float = 0.6   # real target-language user prompts are scarcer than English ones
    multi_turn_prompts: int = 8
    preference_pairs: int = 240
    eval_prompts: int = 24
    mt_bench_prompts: int = 4
    nlu_mc: int = 12
    gold_prompts: int = 450
    gold_pairs: int = 240
    gold_translations: int = 60
    gold_xl_prompts: int = 240    # cross-lingual gold prompts: English, asking for the answer in the target language
    seed_passages: int = 240      # English passages made of answer sentences (XL-Instruct's seeds)
    parallel_tasks: int = 800     # tasks whose prompt and answer become En/Ko parallel sentences (MT, QE)
    pair_kinds: dict = field(default_factory=lambda: {"wrong": 0.35, "near": 0.2, "wrong_language": 0.3, "over_refusal": 0.15})
    # rejected kinds of the safety family's pairs: a leaked secret, or a refusal in the wrong language
    unsafe_pair_kinds: dict = field(default_factory=lambda: {"unsafe": 0.75, "wrong_language": 0.25})
    # share of prompts of each family (relative weights; a family not named weighs 1)
    family_weights: dict = field(default_factory=lambda: {"refuse": 2.0})
    # share of non-English prompts of a family with quotable words that quote them in English
    code_switch_rate: float = 0.5


class _Sampler:
    """Draws (family, values, variant) tasks, families in the shares of ``sizes.family_weights``.

    Held-out parts (gold, eval, MT-Bench, NLU) never share a prompt text with any other part;
    training parts (user prompts, preference pairs) share none with a held-out part or within
    themselves, but may share texts with each other (as real training sources do)."""

    def __init__(self, seed: int, facts: dict, sizes: "WorldSizes", languages: tuple[str, ...]):
        self.rng = random.Random(f"world-{seed}")
        self.languages = languages
        self.facts = facts
        self.sizes = sizes
        self.families = list(FAMILIES.values())
        self.weights = [float(sizes.family_weights.get(f.name, 1.0)) for f in self.families]
        self.heldout: set[str] = set()
        self.training: set[str] = set()
        self.part: dict[str, set[str]] = {}

    def task(self, part: str, heldout: bool, langs: tuple[str, ...] | None = None, names: tuple[str, ...] | None = None,
             rng: random.Random | None = None, suffix: str = "", avoid: set[str] | frozenset = frozenset()) -> tuple[Family, dict, int]:
        """A new task for ``part``: families limited to ``names``, drawn from ``rng`` (default the
        world's); its prompt text is the template's + ``suffix``, and is not one of ``avoid``."""
        rng = rng or self.rng
        langs = langs or self.languages
        seen = self.part.setdefault(part, set())
        families = [f for f in self.families if names is None or f.name in names]
        weights = [w for f, w in zip(self.families, self.weights) if names is None or f.name in names]
        first = rng.choices(families, weights)[0]
        order = [first] + [f for f in rng.sample(families, len(families)) if f is not first]
        for fam in order:
            for _ in range(60):
                values, variant = _with_phrase_language(fam, fam.sample(rng, self.facts), self.languages[1]), rng.randrange(variants(fam))
                if fam.quote and any(lang != PIVOT for lang in langs) and rng.random() < self.sizes.code_switch_rate:
                    values["quoted"] = True
                values = with_variant(fam, values, variant)
                texts = [prompt_text(fam, values, lang, self.facts, variant) + suffix for lang in langs]
                taken = (self.heldout, self.training if heldout else seen, avoid)  # looked up in place, not joined
                if not any(t in group for t in texts for group in taken):
                    (self.heldout if heldout else self.training).update(texts)
                    seen.update(texts)
                    return fam, values, variant
        raise RuntimeError(f"the world ran out of new prompts for {part}: lower tiny_world.sizes")


def _with_phrase_language(fam: Family, values: dict, language: str) -> dict:
    """``values`` of a translate task with the language of its English prompt's phrase (``language``)."""
    return {**values, "phrase_language": language} if fam.name == "translate" else values


def world_languages(target_language: str = DEFAULT_TARGET) -> tuple[str, str]:
    """(English, ``target_language``), checked against the world's languages."""
    if target_language == PIVOT:
        raise ValueError(f"target_language must differ from the world's pivot language {PIVOT!r}")
    L.language(target_language)  # ValueError naming the world's languages
    return PIVOT, target_language


@dataclass
class _Build:
    """What every part of one world's build shares: the sampler (its random stream and the prompts already
    taken), the facts, the languages, the sizes, and the parts built so far."""

    seed: int
    sizes: WorldSizes
    facts: dict
    langs: tuple[str, str]
    s: _Sampler
    out: dict[str, list[dict]]

    @property
    def target(self) -> str:
        return self.langs[1]


def build_world(seed: int, sizes: WorldSizes | None = None, target_language: str = DEFAULT_TARGET,
                extra_languages: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """Every part of the world for ``seed`` in English and ``target_language`` (deterministic).

    ``extra_languages``: the preference pairs also in each of these languages (the same tasks and the same
    rejections, ids ``pair-NNNN-<lang>``), for evaluating reward models on languages the run does not
    train on (the RM-transfer paper evaluates an English RM on every target language). Every other part,
    and the pairs of English and the target language, are those of the world without them.

    The parts are built in a fixed order (one function each), since they draw from one random stream
    and no part may reuse a held-out prompt: the gold set first."""
    sizes = sizes or WorldSizes()
    facts = L.facts(seed)
    langs = world_languages(target_language)
    b = _Build(seed, sizes, facts, langs, _Sampler(seed, facts, sizes, langs), {p: [] for p in PARTS})
    _gold_set(b)
    xl_questions = _cross_lingual_gold(b)
    _benchmarks(b)
    _user_prompts(b)
    _preference_pairs(b, [world_languages(lang)[1] for lang in extra_languages if lang != b.target])
    _seed_passages(b, taken=b.s.heldout | xl_questions)
    _parallel_sentences(b)
    return b.out


def _gold_set(b: _Build) -> None:
    """The held-out gold prompts and pairs per language, then the gold translations."""
    s, facts, sizes, out = b.s, b.facts, b.sizes, b.out
    for lang in b.langs:
        for i in range(sizes.gold_prompts):
            fam, values, variant = s.task("gold_prompts", True, langs=(lang,))
            out["gold_prompts"].append({"id": f"gold-{lang}-{i:04d}", "language": lang, "family": fam.name,
                                        "prompt": prompt_text(fam, values, lang, facts, variant),
                                        "meta": make_meta(fam, values, lang, facts)})
        for i in range(sizes.gold_pairs):
            fam, values, variant = s.task("gold_pairs", True, langs=(lang,))
            out["gold_pairs"].append({"pair_id": f"gold-{lang}-{i:04d}", **_pair(fam, values, variant, lang, facts, s.rng, sizes, b.langs)})
    for i in range(sizes.gold_translations):
        fam, values, variant = s.task("gold_translations", True)
        src = prompt_text(fam, values, PIVOT, facts, variant) if i % 2 else answer_text(fam, values, PIVOT, facts)
        ref = prompt_text(fam, values, b.target, facts, variant) if i % 2 else answer_text(fam, values, b.target, facts)
        out["gold_translations"].append({"id": f"gold-mt-{i:04d}", "source_language": PIVOT, "target_language": b.target,
                                         "source": src, "reference": ref})


def _cross_lingual_gold(b: _Build) -> set[str]:
    """Cross-lingual gold prompts (language "xl"): English prompts asking for the answer in the target
    language, drawn from their own generator (so the parts before and after are those of earlier versions).
    Returns their English questions: no XL-Instruct seed may ask one of them."""
    xl_rng = random.Random(f"world-xl-{b.seed}")
    xl_questions: set[str] = set()
    for i in range(b.sizes.gold_xl_prompts):
        template = xl_rng.randrange(len(CROSS_LINGUAL_TEMPLATES))
        suffix = " " + CROSS_LINGUAL_TEMPLATES[template].format(lang=L.LANGUAGE_NAMES[PIVOT][b.target])
        fam, values, variant = b.s.task("gold_xl_prompts", True, langs=(PIVOT,), names=XL_FAMILIES, rng=xl_rng, suffix=suffix)
        prompt = cross_lingual_prompt(fam, values, b.target, b.facts, variant, template)
        xl_questions.add(prompt[: -len(suffix)])
        b.out["gold_prompts"].append({"id": f"gold-xl-{i:04d}", "language": "xl", "family": fam.name, "prompt": prompt,
                                      "meta": make_meta(fam, values, b.target, b.facts, prompt_language=PIVOT)})
    return xl_questions


def _benchmarks(b: _Build) -> None:
    """Per language: the AlpacaEval-style prompts, the two-turn MT-Bench questions, the 4-choice NLU items."""
    s, facts, sizes, out = b.s, b.facts, b.sizes, b.out
    for lang in b.langs:
        for i in range(sizes.eval_prompts):
            fam, values, variant = s.task("eval_prompts", True, langs=(lang,))
            out["eval_prompts"].append({"id": f"eval-{lang}-{i:03d}", "language": lang, "dataset": "tiny_world",
                                        "instruction": prompt_text(fam, values, lang, facts, variant)})
        for i in range(sizes.mt_bench_prompts):
            turns, refs, cats = [], [], []
            for _ in range(2):
                fam, values, variant = s.task("mt_bench_prompts", True, langs=(lang,))
                turns.append(prompt_text(fam, values, lang, facts, variant))
                refs.append(answer_text(fam, values, lang, facts))
                cats.append(MT_BENCH_CATEGORY[fam.name])
            row = {"id": f"mt-{lang}-{i:03d}", "language": lang, "category": cats[0], "turns": turns}
            if cats[0] in ("math", "reasoning"):
                row["reference"] = refs
            out["mt_bench_prompts"].append(row)
        for i in range(sizes.nlu_mc):
            for _ in range(20):  # a task with three distinct wrong answers
                fam, values, variant = s.task("nlu_mc", True, langs=(lang,))
                right = answer_text(fam, values, lang, facts)
                choices = [right]
                for _ in range(50):
                    wrong = answer_text(fam, fam.wrong(values, s.rng, s.rng.random() < 0.5), lang, facts)
                    if wrong not in choices:
                        choices.append(wrong)
                    if len(choices) == 4:
                        break
                if len(choices) == 4:
                    break
            s.rng.shuffle(choices)
            out["nlu_mc"].append({"id": f"nlu-{lang}-{i:03d}", "language": lang, "question": prompt_text(fam, values, lang, facts, variant),
                                  "choices": choices, "answer": choices.index(right)})


def _user_prompts(b: _Build) -> None:
    """LMSYS-style user prompts per language: single-turn ones, then two-turn conversations."""
    s, facts, sizes, out = b.s, b.facts, b.sizes, b.out
    for lang in b.langs:
        n_prompts = sizes.user_prompts if lang == PIVOT else round(sizes.user_prompts * sizes.target_prompt_share)
        for i in range(n_prompts):
            fam, values, variant = s.task("user_prompts", False, langs=(lang,))
            out["user_prompts"].append({"conversation_id": f"world-{lang}-{i:04d}", "language": lang, "model": "tiny-world", "turn": 1,
                                        "conversation": [{"role": "user", "content": prompt_text(fam, values, lang, facts, variant)}]})
        for i in range(sizes.multi_turn_prompts):
            conv = []
            for _ in range(2):
                fam, values, variant = s.task("user_prompts", False, langs=(lang,))
                conv += [{"role": "user", "content": prompt_text(fam, values, lang, facts, variant)},
                         {"role": "assistant", "content": answer_text(fam, values, lang, facts)}]
            out["user_prompts"].append({"conversation_id": f"world-{lang}-mt-{i:04d}", "language": lang, "model": "tiny-world", "turn": 2,
                                        "conversation": conv})


def _preference_pairs(b: _Build, extras: list[str]) -> None:
    """pair-NNNN-<lang>: the same task and the same rejection in both languages (and in each of ``extras``,
    drawn from their own generators, so the pairs of the run's languages are unchanged)."""
    s = b.s
    for i in range(b.sizes.preference_pairs):
        fam, values, variant = s.task("preference_pairs", False)
        kind_seed = s.rng.random()
        for lang in extras:
            rng = random.Random(f"{b.seed}-pair-{i}-{kind_seed}")
            extra_values = _with_phrase_language(fam, values, lang)
            b.out["preference_pairs"].append({"pair_id": f"pair-{i:04d}-{lang}",
                                              **_pair(fam, extra_values, variant, lang, b.facts, rng, b.sizes, (PIVOT, lang), with_meta=False)})
        for lang in b.langs:
            rng = random.Random(f"{b.seed}-pair-{i}-{kind_seed}")
            b.out["preference_pairs"].append({"pair_id": f"pair-{i:04d}-{lang}",
                                              **_pair(fam, values, variant, lang, b.facts, rng, b.sizes, b.langs, with_meta=False)})


#: The topic of a seed passage, by the family of its first sentence.
PASSAGE_TOPICS = {"add": "arithmetic", "convert": "measurement", "weekday": "calendar", "lookup": "geography", "reverse": "lists",
                  "count": "lists", "refuse": "security"}


def _seed_passages(b: _Build, taken: set[str]) -> None:
    """XL-Instruct's seeds: passages of two fact sentences of training tasks, the first the answer to a
    question the teacher writes back (never one of ``taken``: held-out prompts, cross-lingual questions)."""
    passage_rng = random.Random(f"world-passages-{b.seed}")
    cycle = list(SEED_FAMILIES)  # families in turn, while a family has questions left
    for i in range(b.sizes.seed_passages):
        for _ in range(200):
            name = cycle[i % len(cycle)]
            try:
                first = b.s.task("seed_passages", False, langs=(PIVOT,), names=(name,), rng=passage_rng)
                second = b.s.task("seed_passages", False, langs=(PIVOT,), names=SEED_FAMILIES, rng=passage_rng)
            except RuntimeError:
                cycle.remove(name)
                continue
            text = " ".join(passage_sentence(fam, values, b.facts) for fam, values, _ in (first, second))
            if reverse_question(text, b.seed) not in taken:
                break
        else:
            raise RuntimeError("the world ran out of new tasks for seed_passages: lower tiny_world.sizes.seed_passages")
        b.out["seed_passages"].append({"passage_id": f"passage-{i:04d}", "language": PIVOT, "topic": PASSAGE_TOPICS[first[0].name],
                                       "text": text})


def _parallel_sentences(b: _Build) -> None:
    """Parallel English/target sentences for the MT and QE models: prompts and answers of tasks the other parts
    use (never a held-out one), plus the translated phrases and single words of the lexicon."""
    seen = set()
    prng = random.Random(f"parallel-{b.seed}")
    for _ in range(b.sizes.parallel_tasks):
        fam = prng.choice(list(FAMILIES.values()))
        values, variant = _with_phrase_language(fam, fam.sample(prng, b.facts), b.target), prng.randrange(2)
        prompts = {lang: prompt_text(fam, values, lang, b.facts, variant) for lang in b.langs}
        answers = {lang: answer_text(fam, values, lang, b.facts) for lang in b.langs}
        for pair in (prompts, answers):
            if pair[PIVOT] not in seen and pair[PIVOT] not in b.s.heldout and pair[b.target] not in b.s.heldout:
                seen.add(pair[PIVOT])
                b.out["parallel_sentences"].append(pair)
    for words in (L.WEEKDAYS, L.COLORS, L.FRUITS, L.COUNTRIES, L.CAPITALS, L.ANIMALS, L.NOUNS):
        b.out["parallel_sentences"] += [{PIVOT: e, b.target: t} for e, t in zip(words[PIVOT], words[b.target])]


def _pair(fam: Family, values: dict, variant: int, lang: str, facts: dict, rng: random.Random, sizes: WorldSizes,
          langs: tuple[str, str], with_meta: bool = True) -> dict:
    """A pair whose rejected answer is of one *kind*: ``wrong`` (another answer), ``near`` (a near
    miss), ``wrong_language`` (the right answer in the other language), ``unsafe`` (a leaked secret) or
    ``over_refusal`` (a refusal of a safe request, RewardBench's "should respond")."""
    kinds, weights = zip(*(sizes.unsafe_pair_kinds if fam.category == "safety" else sizes.pair_kinds).items())
    kind = rng.choices(kinds, weights)[0]
    chosen = answer_text(fam, values, lang, facts)
    if kind == "wrong_language":
        rejected = answer_text(fam, values, langs[1] if lang == langs[0] else langs[0], facts)
    elif kind == "over_refusal":
        rejected = FAMILIES["refuse"].answer[lang]
    else:
        rejected = answer_text(fam, fam.wrong(values, rng, kind == "near"), lang, facts)
        if rejected == chosen:  # a family without a near miss for these values
            rejected = answer_text(fam, fam.wrong(values, rng, False), lang, facts)
    category = "safety" if fam.category == "safety" or kind == "over_refusal" else ("chat_hard" if kind != "wrong" else fam.category)
    row = {"language": lang, "category": category, "prompt": prompt_text(fam, values, lang, facts, variant),
           "chosen": chosen, "rejected": rejected}
    if with_meta:
        meta = make_meta(fam, values, lang, facts)
        row.update(family=fam.name, kind=kind, meta=meta,
                   chosen_gold=gold_reward(meta, chosen), rejected_gold=gold_reward(meta, rejected))
    return row


def write_world(seed: int, out_dir: str | Path, sizes: WorldSizes | None = None, target_language: str = DEFAULT_TARGET,
                extra_languages: tuple[str, ...] = ()) -> Path:
    """Write every part as ``<out_dir>/<part>.jsonl`` unless ``world.json`` says they are current."""
    sizes = sizes or WorldSizes()
    out = Path(out_dir)
    stamp = {"seed": seed, "version": VERSION, "sizes": asdict(sizes), "languages": list(world_languages(target_language))}
    if extra_languages:
        stamp["extra_languages"] = list(extra_languages)
    stamp_path = out / STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp and all((out / f"{p}.jsonl").exists() for p in PARTS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(seed, sizes, target_language, tuple(extra_languages))
    for part, rows in world.items():
        tmp = out / f".{part}.jsonl.{os.getpid()}.tmp"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(out / f"{part}.jsonl")
    stamp_path.write_text(json.dumps(stamp, indent=2))
    return out
