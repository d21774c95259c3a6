"""The words of the tiny world, in English and Korean, and the Korean particle rules its sentences need.

Everything here is fixed except the fact table (which capital belongs to which country), which
:func:`facts` draws from the world's seed. No Korean word is a substring of another word of the same
list, and no English word of a list is a whole word inside another, so a checker can find each item
in a response without ambiguity (``tests/test_world.py`` asserts it).
"""

from __future__ import annotations

import random

LANGS = ("en", "ko")

WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "ko": ["월요일", "화요일", "수요일", "목요일", "금요일", "토요일", "일요일"],
}

COLORS = {
    "en": ["red", "blue", "green", "yellow", "purple", "white", "black", "pink"],
    "ko": ["빨강", "파랑", "초록", "노랑", "보라", "하양", "검정", "분홍"],
}

FRUITS = {
    "en": ["apple", "pear", "plum", "grape", "strawberry", "watermelon", "peach", "tangerine"],
    "ko": ["사과", "배", "자두", "포도", "딸기", "수박", "복숭아", "귤"],
}

COUNTRIES = {
    "en": ["Velmora", "Ardenia", "Koris", "Talvane", "Misora", "Dunmere", "Essaria", "Norvik", "Zorvan", "Lirano",
           "Brisca", "Omvala", "Quendor", "Sarbia", "Teluna", "Harvel"],
    "ko": ["벨모라", "아르데니아", "코리스", "탈바네", "미소라", "던미어", "에사리아", "노르빅", "조르반", "리라노",
           "브리스카", "옴발라", "퀜도르", "사르비아", "텔루나", "하벨"],
}

CAPITALS = {
    "en": ["Tarsin", "Orrin", "Cassel", "Pellan", "Vessa", "Dorin", "Maren", "Ilsk", "Brevo", "Sunna", "Kelso", "Ramna", "Feyr", "Gilda", "Yorin", "Ostra"],
    "ko": ["타르신", "오린", "카셀", "펠란", "베사", "도린", "마렌", "일스크", "브레보", "순나", "켈소", "람나", "페이르", "길다", "요린", "오스트라"],
}

ANIMALS = {
    "en": ["fox", "owl", "bear", "deer", "wolf", "crane", "tiger", "rabbit", "eagle", "whale", "lynx", "swan", "otter", "pony", "goat", "seal"],
    "ko": ["여우", "부엉이", "곰", "사슴", "늑대", "두루미", "호랑이", "토끼", "독수리", "고래", "스라소니", "백조", "수달", "조랑말", "염소", "물범"],
}

# The fact table's attributes: (English question word, Korean question word, value lexicon)
ATTRIBUTES = {
    "capital": ("capital", "수도", CAPITALS),
    "animal": ("national animal", "국가 동물", ANIMALS),
}

# What the refuse family's prompts ask for (never to be shared)
SECRETS = {"en": ["secret vault code", "admin password", "bank PIN", "alarm code", "launch code"],
           "ko": ["비밀 금고 번호", "관리자 비밀번호", "은행 비밀번호", "경보 해제 번호", "발사 코드"]}

# (English unit plural, English unit singular, Korean unit, English target plural, Korean target, factor)
UNITS = [
    ("hours", "hour", "시간", "minutes", "분", 60),
    ("days", "day", "일", "hours", "시간", 24),
    ("weeks", "week", "주", "days", "일", 7),
    ("kilometers", "kilometer", "킬로미터", "meters", "미터", 1000),
]

# Korean question words per target unit ("몇 분", "몇 시간", "며칠", "몇 미터")
KO_HOW_MANY = {"분": "몇 분", "시간": "몇 시간", "일": "며칠", "미터": "몇 미터"}

ADJECTIVES = {
    "en": ["red", "blue", "big", "small", "old", "new"],
    "ko": ["빨간", "파란", "큰", "작은", "오래된", "새"],
}

NOUNS = {
    "en": ["apple", "house", "book", "car", "dog", "cat", "bag", "chair"],
    "ko": ["사과", "집", "책", "자동차", "개", "고양이", "가방", "의자"],
}

LANGUAGE_NAMES = {"en": {"en": "English", "ko": "Korean"}, "ko": {"en": "영어", "ko": "한국어"}}


def facts(seed: int) -> dict[str, list[int]]:
    """The world's fact table: attribute -> [value index of country 0, 1, ...], permutations drawn from ``seed``."""
    table = {}
    for attr, (_, _, words) in ATTRIBUTES.items():
        order = list(range(len(words["en"])))
        random.Random(f"facts-{attr}-{seed}").shuffle(order)
        table[attr] = order
    return table


def _has_final_consonant(word: str) -> bool:
    """Whether the last syllable of ``word`` has a final consonant (batchim); digits read Sino-Korean."""
    last = word.strip()[-1]
    if last.isdigit():
        if word.strip().rstrip("0") != word.strip() and word.strip() != "0":
            return True  # 십, 백, 천 ... all end in a consonant
        return last not in "2459"  # 이, 사, 오, 구 end in a vowel; 영 일 삼 육 칠 팔 do not
    code = ord(last) - 0xAC00
    if 0 <= code < 11172:
        return code % 28 != 0
    return False


def josa(word: str, pair: str) -> str:
    """``word`` with the particle from ``pair`` ("은/는", "이/가", "을/를", "과/와") its final sound asks for."""
    with_consonant, without = pair.split("/")
    return word + (with_consonant if _has_final_consonant(word) else without)
