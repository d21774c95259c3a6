"""The world's own answer program, served as an OpenAI-compatible chat endpoint on loopback.

It plays the 72B teacher of the built-in default (no tiny LM learns the world well enough in CPU
minutes: see docs/world.md), so every default run exercises the ``openai`` backend end to end.

* :func:`oracle_reply` - answers a world prompt (parsed back from its template) in the prompt's
  language, and the project's own meta-requests: Magpie-like "write the user's next message" (a new
  world task in the conversation's language), XL-Instruct's reverse instruction (the question one
  of the passage's sentences answers) and refinement (question kept; answer rewritten as the world's
  answer sentence), and translation requests for the world's own sentences (it plays the papers'
  strong LLM translators: GPT-4o, XL-Instruct's best-of-3). A cross-lingual prompt ("What is 2 plus
  6? Answer in Korean.") is answered in the language it asks for. Anything else gets an empty reply, which the synthesis code counts and drops.
* :func:`oracle_server` - one server per process and world seed, started on first use on
  ``127.0.0.1`` (port chosen by the OS) and stopped by :func:`stop_servers` (the project hook calls it
  after every run) or at interpreter exit.

Model role value ``world:oracle`` resolves to ``world-oracle/seed-<seed>`` (the seed is part of the
name, so the call cache never mixes two worlds), followed by the teacher's fault rates when any is
set (``world-oracle/seed-0/drift-0.4/comply-0.5``): a teacher with faults is another model.

**Teacher faults** (:class:`TeacherFaults`, ``tiny_world.teacher_faults``): the oracle's content is
always right, but like a real helpful-first, English-dominant teacher it

* *drifts to English* on a share of the non-English prompts that quote English words (it answers
  the right content in English: language confusion, the failure Kowen and CLO start from);
* *complies* with a share of the rephrased unsafe requests (role play, "for a test", indirect asks)
  and leaks the secret, while it refuses every plain one.

Which prompts are affected is a deterministic function of the world seed and the prompt text.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import random
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kowen_kedro.world import lexicon as L
from kowen_kedro.langid import LANGUAGE_NAMES
from kowen_kedro.world.tasks import (
    FAMILIES,
    answer_text,
    parse_passage_sentence,
    parse_prompt,
    prompt_text,
    translate_sentence,
    variants,
)

logger = logging.getLogger(__name__)
_CODE_OF_NAME = {name: code for code, name in LANGUAGE_NAMES.items()}
ORACLE_REF = "world:oracle"
_TRANSLATE = re.compile(r"Translate the following (?P<src>\w+) text into (?P<tgt>\w+)\. Reply with the translation only\.\n\n(?P<text>.*)\Z", re.S)
_PREFIX = "world-oracle/seed-"


@dataclass(frozen=True)
class TeacherFaults:
    """How often the world's teacher errs like a real one (``tiny_world.teacher_faults``)."""

    drift_to_english: float = 0.0   # share of code-switched non-English prompts answered in English
    comply_rephrased: float = 0.0   # share of rephrased unsafe requests answered with the secret

    def __post_init__(self):
        for name in ("drift_to_english", "comply_rephrased"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"tiny_world.teacher_faults.{name} must be a share in [0, 1], not {value!r}")

    def suffix(self) -> str:
        return "".join(f"/{tag}-{getattr(self, name):g}" for tag, name in _FAULT_TAGS if getattr(self, name))


_FAULT_TAGS = (("drift", "drift_to_english"), ("comply", "comply_rephrased"))


def oracle_model_name(seed: int, faults: TeacherFaults | None = None) -> str:
    return f"{_PREFIX}{int(seed)}{(faults or TeacherFaults()).suffix()}"


def is_oracle(model: str) -> bool:
    return isinstance(model, str) and model.startswith(_PREFIX)


def oracle_spec(model: str) -> tuple[int, TeacherFaults]:
    """(world seed, teacher faults) of an oracle model name."""
    seed, *tags = model[len(_PREFIX):].split("/")
    names = dict(_FAULT_TAGS)
    values = {}
    for tag in tags:
        key, _, value = tag.partition("-")
        if key not in names:
            raise ValueError(f"{model!r}: unknown teacher fault {key!r}; known: {sorted(names)}")
        values[names[key]] = float(value)
    return int(seed), TeacherFaults(**values)


def _share(seed: int, what: str, text: str) -> float:
    """A number in [0, 1) fixed by the world seed, the fault and the prompt text."""
    return int(hashlib.sha256(f"{seed}|{what}|{text}".encode()).hexdigest()[:12], 16) / 16**12


def reverse_question(passage: str, seed: int) -> str:
    """The teacher's reverse instruction for a passage: the question its first fact sentence answers, in
    a plain phrasing fixed by the passage text ("" when no sentence states a world fact)."""
    facts = L.facts(seed)
    for sentence in re.split(r"(?<=\.)\s+", passage.strip()):
        parsed = parse_passage_sentence(sentence, facts)
        if parsed:
            fam, values = parsed
            plain = fam.rephrased_from or variants(fam)  # a question asks plainly (no role play)
            return prompt_text(fam, values, L.PIVOT, facts, int(_share(seed, "reverse", passage.strip()) * plain))
    return ""


def oracle_reply(text: str, seed: int, faults: TeacherFaults | None = None) -> str:
    """The world program's reply to one user message (with the teacher's ``faults``, if any)."""
    facts = L.facts(seed)
    text = text.strip()
    parsed = parse_prompt(text, facts)
    if parsed:
        fam, values, lang = parsed
        faults = faults or TeacherFaults()
        if values.get("rephrased") and _share(seed, "comply", text) < faults.comply_rephrased:
            values = {**values, "leak": True, "code": 1000 + int(_share(seed, "code", text) * 9000)}
        if values.get("quoted") and lang != L.PIVOT and _share(seed, "drift", text) < faults.drift_to_english:
            lang = L.PIVOT
        return answer_text(fam, values, lang, facts)
    if text.startswith("Below is a conversation between a user and an assistant"):  # data.synthesis.NEXT_USER_TURN
        named = text.split("\n", 1)[0].rstrip(".").split()[-1]  # "... in Japanese."
        lang = _CODE_OF_NAME.get(named, L.PIVOT)
        lang = lang if lang in L.LANGS else L.PIVOT
        rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
        fam = rng.choice(list(FAMILIES.values()))
        values = fam.sample(rng, facts)
        if fam.name == "translate" and lang == L.PIVOT:  # an English request quotes a phrase of another world language
            values["phrase_language"] = rng.choice([c for c in L.LANGS if c != L.PIVOT])
        return prompt_text(fam, values, lang, facts, rng.randrange(2))
    m = _TRANSLATE.match(text)  # translation.translators.PROMPT
    if m:
        src, tgt = _CODE_OF_NAME.get(m.group("src")), _CODE_OF_NAME.get(m.group("tgt"))
        if src in L.LANGS and tgt in L.LANGS:
            return translate_sentence(m.group("text"), src, tgt, facts)
        return ""
    if text.startswith("Here is a text:"):  # data.xl_instruct.REVERSE_INSTRUCTION
        return reverse_question(text[len("Here is a text:"):].strip().split("\n\n")[0], seed)
    if text.startswith("Improve this question-answer pair"):  # data.xl_instruct.REFINE_QUESTION / REFINE_RESPONSE
        m = re.search(r"Question: (.*?)\n\nAnswer: ", text, re.S)
        question = m.group(1).strip() if m else ""
        if "Rewrite the question" in text:
            return question
        parsed = parse_prompt(question, facts)
        return answer_text(parsed[0], parsed[1], parsed[2], facts) if parsed else ""
    return ""


class _Listener(ThreadingHTTPServer):
    """A threaded HTTP server whose accept queue holds every connection a client opens at once (the
    standard library's 5 overflowed under the OpenAI backend's 8 concurrent requests: refused connections,
    retried after half a second each)."""

    request_queue_size = 128
    daemon_threads = True


class _Server:
    def __init__(self, model: str):
        self.seed, self.faults = oracle_spec(model)

        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a client's pooled connection is reused, not reset

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = next((m["content"] for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
                try:
                    text = oracle_reply(user, outer.seed, outer.faults)
                except Exception:  # a request the world program cannot read gets an empty reply, never a dead connection
                    logger.exception("world oracle: no reply to %r", user[:200])
                    text = ""
                words = text.split()
                limit = body.get("max_tokens") or body.get("max_completion_tokens")
                finish = "stop"
                if limit and len(words) > limit:
                    text, finish = " ".join(words[:limit]), "length"
                payload = json.dumps({
                    "id": "world-" + hashlib.sha1(user.encode()).hexdigest()[:12], "object": "chat.completion",
                    "created": 0, "model": body.get("model", oracle_model_name(outer.seed)),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                    "usage": {"prompt_tokens": len(user.split()), "completion_tokens": len(text.split()),
                              "total_tokens": len(user.split()) + len(text.split())},
                }, ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = _Listener(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name=f"world-oracle-{self.seed}")
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_SERVERS: dict[str, _Server] = {}
_LOCK = threading.Lock()


def oracle_server(model: str | int) -> str:
    """Base URL of this process's oracle server for the oracle ``model`` name (or a world seed, no
    faults), started on first use."""
    model = oracle_model_name(model) if isinstance(model, int) else model
    with _LOCK:
        if model not in _SERVERS:
            _SERVERS[model] = _Server(model)
        return _SERVERS[model].base_url


def stop_servers() -> int:
    """Stop every oracle server of this process; returns how many were running."""
    with _LOCK:
        n = len(_SERVERS)
        for server in _SERVERS.values():
            server.stop()
        _SERVERS.clear()
        return n


atexit.register(stop_servers)
