"""Names and lyrics in several languages and scripts, with genre, mood and artist vocabulary.

Content words are pseudo-words built from each language's syllables (accents, Cyrillic,
kana), so tokenizers meet realistic scripts while the genre and mood signal lives in
which words a lyric uses - recoverable by a bag-of-words model, but not perfectly.
"""

from __future__ import annotations

import numpy as np

LANGUAGES: dict[str, dict[str, list[str]]] = {
    "en": {
        "syllables": [
            "la",
            "ver",
            "night",
            "heart",
            "fi",
            "re",
            "dre",
            "am",
            "sky",
            "lo",
            "sun",
            "ri",
            "der",
            "mo",
            "ton",
            "shi",
            "ne",
            "bro",
            "ken",
            "ay",
        ],
        "common": [
            "the",
            "and",
            "you",
            "I",
            "my",
            "in",
            "of",
            "we",
            "love",
            "baby",
            "oh",
            "to",
            "is",
            "all",
            "never",
            "again",
            "tonight",
            "yeah",
        ],
    },
    "es": {
        "syllables": [
            "co",
            "ra",
            "zón",
            "mi",
            "sue",
            "ño",
            "lú",
            "na",
            "ca",
            "mi",
            "no",
            "fue",
            "go",
            "ár",
            "bol",
            "llu",
            "via",
            "ni",
            "ña",
            "sol",
        ],
        "common": [
            "el",
            "la",
            "y",
            "de",
            "mi",
            "tu",
            "amor",
            "corazón",
            "qué",
            "más",
            "noche",
            "sí",
            "por",
            "todo",
            "también",
            "niña",
        ],
    },
    "pt": {
        "syllables": [
            "sau",
            "da",
            "de",
            "co",
            "ra",
            "ção",
            "mar",
            "lu",
            "ar",
            "não",
            "são",
            "vo",
            "cê",
            "mãe",
            "ter",
            "ra",
            "cé",
            "u",
            "flor",
            "ir",
        ],
        "common": [
            "o",
            "a",
            "e",
            "de",
            "meu",
            "você",
            "amor",
            "não",
            "saudade",
            "coração",
            "mar",
            "até",
            "então",
        ],
    },
    "fr": {
        "syllables": [
            "a",
            "mour",
            "cœur",
            "nuit",
            "é",
            "toi",
            "le",
            "rê",
            "ve",
            "ciel",
            "mè",
            "re",
            "fê",
            "te",
            "ça",
            "ç",
            "on",
            "dé",
            "jà",
            "lu",
        ],
        "common": [
            "le",
            "la",
            "et",
            "je",
            "tu",
            "mon",
            "amour",
            "cœur",
            "nuit",
            "être",
            "où",
            "déjà",
            "très",
            "ça",
        ],
    },
    "de": {
        "syllables": [
            "herz",
            "nacht",
            "lie",
            "be",
            "mä",
            "dchen",
            "grü",
            "ße",
            "tr",
            "äu",
            "me",
            "fü",
            "r",
            "schö",
            "n",
            "stra",
            "ße",
            "wel",
            "t",
            "ö",
        ],
        "common": [
            "der",
            "die",
            "und",
            "ich",
            "du",
            "mein",
            "liebe",
            "herz",
            "nacht",
            "für",
            "schön",
            "über",
            "größer",
            "straße",
        ],
    },
    "ru": {
        "syllables": [
            "лю",
            "бо",
            "вь",
            "се",
            "рд",
            "це",
            "ночь",
            "мо",
            "я",
            "зве",
            "зда",
            "до",
            "ро",
            "га",
            "не",
            "бо",
            "ве",
            "тер",
            "сне",
            "г",
        ],
        "common": [
            "и",
            "в",
            "я",
            "ты",
            "мой",
            "любовь",
            "сердце",
            "ночь",
            "не",
            "на",
            "где",
            "всегда",
        ],
    },
    "ja": {
        "syllables": [
            "あ",
            "い",
            "こ",
            "こ",
            "ろ",
            "そ",
            "ら",
            "ゆ",
            "め",
            "な",
            "み",
            "だ",
            "ほ",
            "し",
            "さ",
            "く",
            "ら",
            "ひ",
            "か",
            "り",
        ],
        "common": [
            "愛",
            "夜",
            "空",
            "君",
            "僕",
            "夢",
            "心",
            "の",
            "に",
            "は",
            "を",
            "が",
            "です",
            "まだ",
        ],
    },
}


def make_word(rng: np.random.Generator, language: str) -> str:
    syllables = LANGUAGES[language]["syllables"]
    n = int(rng.integers(2, 4))
    return "".join(syllables[i] for i in rng.integers(0, len(syllables), n))


def make_name(rng: np.random.Generator, language: str, words: int) -> str:
    """A title-cased name (artist, album, track) of `words` pseudo-words."""
    return " ".join(make_word(rng, language).capitalize() for _ in range(words))


def make_vocabulary(rng: np.random.Generator, genres: list[str], moods: list[str]) -> dict:
    """Per language: 25 words per genre and 15 per mood, drawn once for the world."""
    return {
        lang: {
            "genre": {g: [make_word(rng, lang) for _ in range(25)] for g in genres},
            "mood": {m: [make_word(rng, lang) for _ in range(15)] for m in moods},
        }
        for lang in LANGUAGES
    }


def write_lyrics(
    rng: np.random.Generator,
    vocabulary: dict,
    language: str,
    genre: str,
    mood: str,
    theme: list[str],
) -> str:
    """Verses and a repeated chorus; each word comes from a mixture of the language's
    common words, the genre's and mood's words, the artist's theme and other genres'
    words (noise), so no single word gives the genre away."""
    vocab = vocabulary[language]
    others = [w for g, words in vocab["genre"].items() if g != genre for w in words] or ["la"]
    sources = [
        LANGUAGES[language]["common"],
        vocab["genre"][genre],
        vocab["mood"][mood],
        theme,
        others,
    ]
    weights = np.array([0.32, 0.22, 0.15, 0.12, 0.19])

    def line() -> str:
        picks = rng.choice(len(sources), size=int(rng.integers(4, 9)), p=weights)
        return " ".join(sources[s][int(rng.integers(0, len(sources[s])))] for s in picks)

    chorus = [line() for _ in range(2)]
    verses = [
        [line() for _ in range(int(rng.integers(2, 5)))] for _ in range(int(rng.integers(1, 4)))
    ]
    stanzas = []
    for verse in verses:
        stanzas.append("\n".join(verse))
        stanzas.append("\n".join(chorus))
    return "\n\n".join(stanzas)
