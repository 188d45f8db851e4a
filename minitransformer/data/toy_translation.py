"""A toy "English -> pseudo-French" translation task, generated on the fly.

It is the default data of ``minitransformer train``: small enough that a 2-3 layer
encoder-decoder with d_model 64-128 learns it to near 100% exact match on a laptop
CPU in minutes, yet its word order differs from the source, so the cross-attention
map is not just a diagonal.

Grammar of the English side (words separated by single spaces, lower case)::

    S   -> NP TV NP [ADV]        transitive verb with an object
         | NP IV [ADV]           intransitive verb
    NP  -> DET ADJ* NOUN         0, 1 or 2 adjectives, never the same one twice

so sentences have 3 to 10 words. The translation follows four rules:

1. Every word is translated one-to-one through the lexicon below, so the French
   sentence has exactly as many words as the English one.
2. Each noun has a gender. The determiner agrees with it (the -> le/la,
   a -> un/une) and so does each adjective (big -> grand/grande).
3. Adjectives move after the noun, in mirror order: the adjective nearest to the
   noun in English stays nearest to it in French.
   ``the big black cat`` -> ``le chat noir grand``.
4. The sentence-final adverb moves to the front of the sentence.
   ``the cat sleeps now`` -> ``maintenant le chat dort``.

Example: ``a small girl sees the old black horse often`` ->
``souvent une fille petite voit le cheval noir vieux``.

The lexicon has 50 English and 60 French words, and there are
``toy_sentence_count()`` (about 7.3e8) different sentences, so a training set of
tens of thousands of sentences covers a vanishing part of them: a model that gets
held-out sentences right has learned the rules, not memorised pairs.
"""

from __future__ import annotations

from .seeding import Seed, as_generator

__all__ = [
    "DETERMINERS",
    "NOUNS",
    "ADJECTIVES",
    "TRANSITIVE_VERBS",
    "INTRANSITIVE_VERBS",
    "ADVERBS",
    "toy_translate",
    "toy_translation_pairs",
    "toy_sentence_count",
    "toy_vocabularies",
]

# English determiner -> (masculine, feminine) French form.
DETERMINERS: dict[str, tuple[str, str]] = {"the": ("le", "la"), "a": ("un", "une")}

# English noun -> (French noun, gender "m" or "f").
NOUNS: dict[str, tuple[str, str]] = {
    "cat": ("chat", "m"),
    "dog": ("chien", "m"),
    "bird": ("oiseau", "m"),
    "horse": ("cheval", "m"),
    "boy": ("garcon", "m"),
    "king": ("roi", "m"),
    "book": ("livre", "m"),
    "tree": ("arbre", "m"),
    "house": ("maison", "f"),
    "car": ("voiture", "f"),
    "girl": ("fille", "f"),
    "queen": ("reine", "f"),
    "flower": ("fleur", "f"),
    "door": ("porte", "f"),
    "moon": ("lune", "f"),
    "mouse": ("souris", "f"),
}

# English adjective -> (masculine, feminine) French form; some forms coincide.
ADJECTIVES: dict[str, tuple[str, str]] = {
    "big": ("grand", "grande"),
    "small": ("petit", "petite"),
    "black": ("noir", "noire"),
    "green": ("vert", "verte"),
    "blue": ("bleu", "bleue"),
    "old": ("vieux", "vieille"),
    "happy": ("content", "contente"),
    "strong": ("fort", "forte"),
    "red": ("rouge", "rouge"),
    "young": ("jeune", "jeune"),
}

TRANSITIVE_VERBS: dict[str, str] = {
    "sees": "voit",
    "likes": "aime",
    "eats": "mange",
    "finds": "trouve",
    "follows": "suit",
    "takes": "prend",
    "watches": "regarde",
    "helps": "aide",
    "draws": "dessine",
    "calls": "appelle",
}

INTRANSITIVE_VERBS: dict[str, str] = {
    "sleeps": "dort",
    "runs": "court",
    "sings": "chante",
    "waits": "attend",
    "dances": "danse",
    "falls": "tombe",
}

ADVERBS: dict[str, str] = {
    "now": "maintenant",
    "often": "souvent",
    "sometimes": "parfois",
    "always": "toujours",
    "again": "encore",
    "here": "ici",
}

_GENDER_INDEX = {"m": 0, "f": 1}

# Sampling weights: most sentences are transitive, half end in an adverb, and noun
# phrases with more adjectives are rarer; lengths then spread over 3..10 words.
_P_TRANSITIVE = 0.7
_P_ADVERB = 0.5
_P_NUM_ADJECTIVES = (0.5, 0.35, 0.15)


def _translate_noun_phrase(det: str, adjectives: list[str], noun: str) -> list[str]:
    french_noun, gender = NOUNS[noun]
    g = _GENDER_INDEX[gender]
    return [DETERMINERS[det][g], french_noun] + [ADJECTIVES[a][g] for a in reversed(adjectives)]


def _parse_noun_phrase(words: list[str], start: int, sentence: str) -> tuple[list[str], int]:
    """Translate the noun phrase starting at ``words[start]``; return it and the next index."""
    if start >= len(words) or words[start] not in DETERMINERS:
        found = repr(words[start]) if start < len(words) else "the end of the sentence"
        raise ValueError(
            f"toy_translate: expected a determiner {sorted(DETERMINERS)} at word "
            f"{start + 1} of {sentence!r}, found {found}"
        )
    det = words[start]
    i = start + 1
    adjectives: list[str] = []
    while i < len(words) and words[i] in ADJECTIVES:
        adjectives.append(words[i])
        i += 1
    if len(adjectives) > 2 or len(set(adjectives)) != len(adjectives):
        raise ValueError(
            f"toy_translate: a noun phrase takes at most 2 different adjectives, found "
            f"{adjectives} in {sentence!r}"
        )
    if i >= len(words) or words[i] not in NOUNS:
        found = repr(words[i]) if i < len(words) else "the end of the sentence"
        raise ValueError(
            f"toy_translate: expected a noun at word {i + 1} of {sentence!r}, found {found}"
        )
    return _translate_noun_phrase(det, adjectives, words[i]), i + 1


def toy_translate(english: str) -> str:
    """The pseudo-French translation of a sentence of the toy grammar.

    Raises ValueError naming the word where ``english`` leaves the grammar, so the
    CLI can tell a user that a sentence is outside what the model was taught.
    """
    words = english.split(" ")
    french, i = _parse_noun_phrase(words, 0, english)
    if i < len(words) and words[i] in TRANSITIVE_VERBS:
        french.append(TRANSITIVE_VERBS[words[i]])
        obj, i = _parse_noun_phrase(words, i + 1, english)
        french.extend(obj)
    elif i < len(words) and words[i] in INTRANSITIVE_VERBS:
        french.append(INTRANSITIVE_VERBS[words[i]])
        i += 1
    else:
        found = repr(words[i]) if i < len(words) else "the end of the sentence"
        raise ValueError(
            f"toy_translate: expected a verb at word {i + 1} of {english!r}, found {found}"
        )
    if i < len(words) and words[i] in ADVERBS:
        french.insert(0, ADVERBS[words[i]])
        i += 1
    if i != len(words):
        raise ValueError(
            f"toy_translate: expected an adverb {sorted(ADVERBS)} or the end of the sentence "
            f"at word {i + 1} of {english!r}, found {words[i]!r}"
        )
    return " ".join(french)


def toy_sentence_count() -> int:
    """How many different English sentences the grammar generates."""
    n_adj = len(ADJECTIVES)
    noun_phrases = len(DETERMINERS) * len(NOUNS) * (1 + n_adj + n_adj * (n_adj - 1))
    endings = len(ADVERBS) + 1
    transitive = noun_phrases * len(TRANSITIVE_VERBS) * noun_phrases * endings
    intransitive = noun_phrases * len(INTRANSITIVE_VERBS) * endings
    return transitive + intransitive


def toy_vocabularies() -> tuple[list[str], list[str]]:
    """(English words, French words), each sorted and without repeats."""
    english = [*DETERMINERS, *NOUNS, *ADJECTIVES, *TRANSITIVE_VERBS, *INTRANSITIVE_VERBS, *ADVERBS]
    french = [w for forms in DETERMINERS.values() for w in forms]
    french += [noun for noun, _ in NOUNS.values()]
    french += [w for forms in ADJECTIVES.values() for w in forms]
    french += [*TRANSITIVE_VERBS.values(), *INTRANSITIVE_VERBS.values(), *ADVERBS.values()]
    return sorted(set(english)), sorted(set(french))


def toy_translation_pairs(
    num_examples: int, seed: Seed = 0, *, unique: bool = True
) -> list[tuple[str, str]]:
    """``num_examples`` random (English, pseudo-French) sentence pairs of the toy grammar.

    With ``unique`` (the default) no English sentence appears twice, so any split of
    the result into training and validation sets shares no sentence.
    """
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if unique and num_examples > toy_sentence_count():
        raise ValueError(
            f"asked for {num_examples} different sentences, but the grammar has only "
            f"{toy_sentence_count()}"
        )
    rng = as_generator(seed)
    dets, nouns, adjs = list(DETERMINERS), list(NOUNS), list(ADJECTIVES)
    tverbs, iverbs, advs = list(TRANSITIVE_VERBS), list(INTRANSITIVE_VERBS), list(ADVERBS)

    def noun_phrase() -> list[str]:
        u = rng.random()
        words = [dets[rng.integers(len(dets))]]
        if u >= _P_NUM_ADJECTIVES[0]:
            first = int(rng.integers(len(adjs)))
            words.append(adjs[first])
            if u >= _P_NUM_ADJECTIVES[0] + _P_NUM_ADJECTIVES[1]:
                # A second, different adjective: draw from the other n - 1 and skip `first`.
                second = int(rng.integers(len(adjs) - 1))
                words.append(adjs[second + (second >= first)])
        words.append(nouns[rng.integers(len(nouns))])
        return words

    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(pairs) < num_examples:
        words = noun_phrase()
        if rng.random() < _P_TRANSITIVE:
            words += [tverbs[rng.integers(len(tverbs))], *noun_phrase()]
        else:
            words.append(iverbs[rng.integers(len(iverbs))])
        if rng.random() < _P_ADVERB:
            words.append(advs[rng.integers(len(advs))])
        english = " ".join(words)
        if unique:
            if english in seen:
                continue
            seen.add(english)
        pairs.append((english, toy_translate(english)))
    return pairs
