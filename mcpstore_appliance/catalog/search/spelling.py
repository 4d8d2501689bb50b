"""Typo correction: when a search finds nothing, words that are not in the index vocabulary are replaced by
the nearest known words (trigram candidates, then edit distance <= 2) and the search runs again; the answer
says which query it used (`corrected_query`).
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager


def _grams(word: str) -> set[str]:
    padded = f"^{word}$"
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


class Speller:
    """Nearest known words for a misspelled one, from the index vocabulary (term -> document count).

    Candidates share trigrams with the word (an in-memory trigram index over the vocabulary); the best are
    those within edit distance 1 (words up to 4 letters) or 2, then the most common. The vocabulary includes
    words of packages the caller cannot see, so a correction is only ever reported when the corrected search
    returns packages the caller can see (which then contain every corrected word)."""

    MAX_CANDIDATES = 300

    def __init__(self, vocabulary: dict[str, int]):
        self.docs = vocabulary
        self.sorted_terms = sorted(vocabulary)
        self.grams: dict[str, list[str]] = defaultdict(list)
        for term in vocabulary:
            if 3 <= len(term) <= 40 and not term.isdigit():
                for gram in _grams(term):
                    self.grams[gram].append(term)

    def knows(self, term: str, as_prefix: bool = False) -> bool:
        if term in self.docs:
            return True
        if as_prefix:
            at = bisect.bisect_left(self.sorted_terms, term)
            return at < len(self.sorted_terms) and self.sorted_terms[at].startswith(term)
        return False

    def suggestions(self, word: str, count: int = 3) -> list[str]:
        if len(word) < 3 or word.isdigit():
            return []
        shared: Counter[str] = Counter()
        for gram in _grams(word):
            shared.update(self.grams.get(gram, ()))
        limit = 1 if len(word) <= 4 else 2
        scored = []
        for term, _ in shared.most_common(self.MAX_CANDIDATES):
            distance = edit_distance(word, term, limit)
            if distance <= limit:
                scored.append((distance, -self.docs[term], term))
        return [term for _, _, term in sorted(scored)[:count]]


def attempts(speller: Speller, terms: list[str]) -> list[list[str]]:
    """Corrected word lists to try in order: the best suggestion for every unknown word, then the runners-up
    one word at a time (at most 3). Empty when every word is known or one has no suggestion."""
    options: list[list[str]] = []
    for index, term in enumerate(terms):
        last = index == len(terms) - 1
        if speller.knows(term, as_prefix=last and len(term) >= 2):
            options.append([term])
        else:
            options.append(speller.suggestions(term) or [])
    if all(len(o) == 1 and o[0] == t for o, t in zip(options, terms)) or any(not o for o in options):
        return []
    tries = [[o[0] for o in options]]
    for index, choices in enumerate(options):
        for alternative in choices[1:]:
            attempt = [o[0] for o in options]
            attempt[index] = alternative
            tries.append(attempt)
    return [list(dict.fromkeys(attempt)) for attempt in tries[:3]]


class SpellerCache:
    """The speller of the current catalog generation. Rebuilt in the caller's thread when the vocabulary is
    small (it then always reflects the latest publish); for a big one, an older speller answers while a
    rebuild runs in the background."""

    def __init__(self, connect: Callable[[], AbstractContextManager[sqlite3.Connection]]):
        self.connect = connect  # a read connection of its own, for the background rebuild
        self._speller: Speller | None = None
        self._generation = -1
        self._seconds = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def built(self) -> bool:
        return self._speller is not None

    def current(self, conn: sqlite3.Connection, generation: int) -> Speller:
        speller = self._speller
        if speller is not None and self._generation == generation:
            return speller
        if speller is None or self._seconds < 0.05:
            return self.rebuild(conn, generation)
        with self._lock:
            start = not self._refreshing
            self._refreshing = True
        if start:
            threading.Thread(target=self._refresh_in_background, args=(generation,), daemon=True).start()
        return speller

    def rebuild(self, conn: sqlite3.Connection, generation: int) -> Speller:
        started = time.perf_counter()
        vocabulary = {term: docs for term, docs in conn.execute("SELECT term, doc FROM package_fts_vocab")}
        speller = Speller(vocabulary)
        self._speller, self._generation = speller, generation
        self._seconds = time.perf_counter() - started
        return speller

    def _refresh_in_background(self, generation: int) -> None:
        try:
            with self.connect() as conn:
                self.rebuild(conn, generation)
        finally:
            with self._lock:
                self._refreshing = False
