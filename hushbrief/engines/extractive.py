"""``extractive``: a dialogue-aware extractive summarizer in pure Python.

The engine picks whole turns (occasionally shortened) and prints them in their
original order with their speaker labels. Nothing is generated, so nothing can
be hallucinated, and it runs anywhere the bot runs.

Algorithm
---------
1. **Tokenize** every non-blank turn (Unicode words; character bigrams for
   CJK/Thai, see :mod:`hushbrief.engines._text`). Greetings,
   acknowledgements, laughter and emoji-only turns are *filler*: never
   candidates (unless the whole thread is filler).
2. **Term weights from the thread itself**, each turn being a document:
   ``w(t) = tf(t) * log((N + K) / (df(t) + 0.5))`` with ``K`` pseudo-turns.
   Frequency finds the topic; the in-thread IDF makes the words used in
   nearly every turn — the stopwords of whatever language — sink by
   themselves in long threads, and ``K`` keeps the IDF from drowning the
   frequency in short ones. Terms used by more than one participant weigh
   more; a small built-in stopword list for the detected language(s) keeps
   only a tenth of the weight.
3. **Turn cues** multiply a turn's gains: decisions, action items and
   commitments ("I will", "let's", "can you", "deadline", ... in several
   languages), questions that got an answer (by ``reply_to`` or, lacking
   that, by another speaker right after) and those answers, turns that
   others replied to, and the first content turn of each conversation (the
   thread's start, or after an hour of silence per ``Turn.t``: openings
   usually say what a conversation is about); turns that laugh or use emoji
   are damped.
4. **Pruning.** For long threads only the best ``POOL_SIZE`` turns by
   stand-alone score (plus each active speaker's best turn and the answers to
   pooled questions) go on, so the whole run is O(total tokens + pool · picks),
   not O(n²).
5. **Greedy coverage selection** (budgeted submodular maximization, lazy
   greedy) over the *sentences* of the pooled turns. The objective is the
   weight of the distinct terms covered; a sentence's marginal gain is the
   weight of its new terms times its turn's cue boost times a
   participant-coverage factor that shrinks while its speaker is already
   represented, divided by ``cost ** LENGTH_EXPONENT``, where the cost counts
   the speaker label once per turn. Near-duplicates of anything picked
   (token-set Jaccard >= ``DUPLICATE_JACCARD``) are skipped, and picking a
   question re-queues its answer with a pairing bonus, so the two tend to
   appear together.
6. **Rendering.** Picked turns keep their order and speaker; a turn of which
   only some sentences were picked (or an over-long sentence cut) ends in
   "…". If the budget cannot hold any sentence with its label, the densest
   short sentence — or the most salient stretch of words — is shown instead,
   so non-empty input never gives an empty summary.

Budget
------
``max_words`` bounds :func:`~hushbrief.engines._text.count_words` of the whole
``Summary.text`` — *including* the bullet dashes and the speaker labels
("- P1:" is two words). That is the strictest reading: a caller can check
``len(summary.text.split()) <= max_words`` without knowing our tokenizer.
CJK/Thai characters count one word each. If the budget is too small for
"- P1:" plus one word, the dash and then the label are dropped.

Everything is deterministic: sums run in token order, ties break by turn
index, and no set or hash order reaches the output.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hushbrief.engines import _text
from hushbrief.engines.base import EngineError, Style, Summary, SummaryOptions, Turn

# Tuned on the DialogSum dev split only (see bench/quality_dialogsum.py).
LENGTH_EXPONENT = 0.6
"""Gain is divided by ``cost ** LENGTH_EXPONENT``: < 1 leans to longer, denser units."""
DUPLICATE_JACCARD = 0.6
"""Token-set Jaccard at or above which a sentence counts as a near-duplicate."""
POOL_SIZE = 300
"""Turns kept after pruning (plus per-speaker bests and answers)."""
POOL_SPEAKERS = 50
"""How many of the most active speakers are guaranteed a candidate turn."""

_IDF_PSEUDO_TURNS = 20
"""The IDF is smoothed with this many imaginary turns that contain no term, so
that in short threads (where every df is tiny and noisy) frequency dominates,
while in long ones the words used everywhere sink."""
_STOPWORD_WEIGHT = 0.1
"""Stopwords keep a sliver of weight so "I will do it." is not worth exactly nothing."""
_SHARED_TERM_FACTOR = 1.5
"""Terms used by more than one participant are what the conversation is about."""
_BOOST_DECISION = 1.0
_BOOST_ACTION = 1.0
_BOOST_ANSWERED_QUESTION = 0.2
_BOOST_ANSWER = 0.3
_BOOST_PER_REPLY = 0.2
_BOOST_REPLIES_MAX = 0.6
_BOOST_OPENER = 1.0
"""The first content turn of a conversation usually says what it is about."""
_SESSION_GAP = 3600.0
"""Seconds of silence after which the next content turn opens a new conversation."""
_BANTER_FACTOR = 0.6
"""Turns that laugh or use emoji are usually chatter around the substance."""
_PAIR_BONUS = 0.5
_SPEAKER_BONUS = 0.5
_ANSWER_WINDOW = 2
"""Without ``reply_to``, an answer is looked for this many turns after a question."""
_SENTENCE_CAP_MIN = 12
_SENTENCE_CAP_MAX = 40
_SENTENCE_CAP_SHARE = 2
"""A single sentence may use at most 1/_SENTENCE_CAP_SHARE of the budget
(clamped to the min/max above); longer ones are cut."""
_FALLBACK_TURNS = 50
"""Turns searched for a single fitting sentence when nothing else fits."""
_ELLIPSIS = "…"
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_CJK_SENTENCE_END = ("。", "！", "？")
_CUT_STRIP = " .,;:、，。．"


@dataclass(slots=True)
class _Cand:
    """One non-blank turn with everything the selection needs."""

    index: int
    speaker: str
    text: str
    """Whitespace-normalized turn text."""
    terms: list[str]
    """Distinct tokens in first-occurrence order."""
    ntokens: int
    """Token count including repeats."""
    filler: bool
    reply_to: int | None
    t: float
    boost: float = 1.0
    answer: int | None = None
    """Index of the turn answering this (question) turn."""
    sentences: int = 0
    """Sentences in the turn, filler ones included (set with its units)."""


@dataclass(slots=True)
class _Unit:
    """One sentence of a pooled turn: the unit the greedy selection picks."""

    turn: _Cand
    pos: int
    """Position among the turn's units (sentence order; filler sentences have none)."""
    text: str
    terms: tuple[str, ...]
    termset: frozenset[str]
    words: int
    cut: bool
    """The sentence was too long and was cut."""


class ExtractiveEngine:
    """Dialogue-aware extractive summarizer (stdlib only, deterministic)."""

    name = "extractive"

    def summarize(self, turns: Sequence[Turn], options: SummaryOptions) -> Summary:
        """Pick the turns that carry the conversation, within ``options.max_words``.

        Raises :class:`EngineError` when no turn has any non-blank text and
        when the budget is not positive.
        """
        if options.max_words < 1:
            raise EngineError("max_words must be positive")
        cands = _candidates(turns)
        if not cands:
            raise EngineError("nothing to summarize")
        if all(c.filler for c in cands):
            # A thread of only "ok"/"thanks" still deserves its best line.
            for c in cands:
                c.filler = False
        weights = _term_weights(cands, options.language)
        _mark_cues(cands)
        bullets = options.style is Style.BULLETS
        chosen = _select(cands, weights, options.max_words, bullets)
        if chosen:
            lines = [_render(turn.speaker, _join(turn, units), bullets) for turn, units in chosen]
            picked = tuple(turn.index for turn, _ in chosen)
        else:
            best, line = _fallback(cands, weights, options.max_words, bullets)
            lines = [line]
            picked = (best.index,)
        text = "\n".join(lines) if bullets else " ".join(lines)
        return Summary(text=text, engine=self.name, picked=picked)


# --------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------


def _candidates(turns: Sequence[Turn]) -> list[_Cand]:
    out: list[_Cand] = []
    for i, turn in enumerate(turns):
        text = _text.normalize_space(turn.text)
        if not text:
            continue
        speaker = _text.normalize_space(turn.speaker) or "?"
        tokens = _text.tokenize(text)
        terms = _text.unique_in_order(tokens)
        reply_to = turn.reply_to
        # Only earlier turns can be answered; anything else is bad input.
        if reply_to is not None and not 0 <= reply_to < i:
            reply_to = None
        filler = _text.is_filler(text)
        cand = _Cand(i, speaker, text, terms, len(tokens), filler, reply_to, turn.t)
        out.append(cand)
    return out


def _detect_stopwords(cands: Sequence[_Cand], language: str) -> frozenset[str]:
    lang = language.casefold().replace("_", "-").split("-")[0]
    if lang in _text.STOPWORDS:
        return _text.STOPWORDS[lang]
    # "auto" (or unknown): count stopword hits per language over a sample of
    # the thread and keep every language with at least half the best count,
    # so a mixed German/English chat gets both lists, while a word that is a
    # stopword only elsewhere ("war", "hat" in English) stays content.
    codes = sorted(_text.STOPWORDS)
    hits = dict.fromkeys(codes, 0)
    for c in cands[:2000]:
        for term in c.terms:
            for code in codes:
                if term in _text.STOPWORDS[code]:
                    hits[code] += 1
    best = max(hits.values())
    if best == 0:
        return frozenset()
    return frozenset().union(*(_text.STOPWORDS[code] for code in codes if hits[code] * 2 >= best))


def _term_weights(cands: Sequence[_Cand], language: str) -> dict[str, float]:
    stop = _detect_stopwords(cands, language)
    df: Counter[str] = Counter()
    tf: Counter[str] = Counter()
    first_speaker: dict[str, str] = {}
    shared: set[str] = set()
    for c in cands:
        df.update(c.terms)
        # Most chat turns repeat no word; tokenize again only those that do.
        tf.update(c.terms if c.ntokens == len(c.terms) else _text.tokenize(c.text))
        for term in c.terms:
            owner = first_speaker.setdefault(term, c.speaker)
            if owner != c.speaker:
                shared.add(term)
    n = len(cands)
    weights: dict[str, float] = {}
    for term, d in df.items():
        # Within-thread IDF: a word used in most turns is a stopword of this
        # conversation whatever its language.
        idf = math.log((n + _IDF_PSEUDO_TURNS) / (d + 0.5))
        w = tf[term] * idf
        if term in shared:
            w *= _SHARED_TERM_FACTOR
        if term in stop or _text.is_laughter(term) or (len(term) == 1 and term.isalpha()):
            w *= _STOPWORD_WEIGHT
        weights[term] = w
    return weights


def _mark_cues(cands: list[_Cand]) -> None:
    pos_of = {c.index: pos for pos, c in enumerate(cands)}
    replies: Counter[int] = Counter()
    first_reply: dict[int, int] = {}
    for c in cands:
        target = c.reply_to
        if target is None or target not in pos_of or cands[pos_of[target]].speaker == c.speaker:
            continue
        replies[target] += 1
        if not c.filler:
            first_reply.setdefault(target, c.index)
    opener = True
    for pos, c in enumerate(cands):
        # A long silence (any turn counts) starts a new conversation; NaN or
        # out-of-order times compare False and simply never split.
        if pos and c.t - cands[pos - 1].t >= _SESSION_GAP:
            opener = True
        if c.filler:
            continue
        cue_text = _text.normalize_for_cues(c.text)
        boost = 1.0
        if _text.DECISION_RE.search(cue_text):
            boost += _BOOST_DECISION
        if _text.ACTION_RE.search(cue_text):
            boost += _BOOST_ACTION
        if replies[c.index]:
            boost += min(_BOOST_REPLIES_MAX, _BOOST_PER_REPLY * replies[c.index])
        if _is_question(cue_text):
            answer = first_reply.get(c.index)
            if answer is None:
                answer = _implicit_answer(cands, pos)
            if answer is not None:
                boost += _BOOST_ANSWERED_QUESTION
                c.answer = answer
        if _text.is_banter(c.text):
            boost *= _BANTER_FACTOR
        if opener:
            boost *= 1.0 + _BOOST_OPENER
            opener = False
        c.boost = boost
    for c in cands:
        if c.answer is not None:
            cands[pos_of[c.answer]].boost += _BOOST_ANSWER


def _is_question(cue_text: str) -> bool:
    return (
        _text.QUESTION_MARK_RE.search(cue_text) is not None
        or _text.QUESTION_START_RE.match(cue_text) is not None
    )


def _implicit_answer(cands: Sequence[_Cand], pos: int) -> int | None:
    """First substantive turn by someone else shortly after a question."""
    asker = cands[pos].speaker
    for nxt in cands[pos + 1 : pos + 1 + _ANSWER_WINDOW]:
        # A joke right after a question is rarely its answer.
        if nxt.speaker != asker and not nxt.filler and not _text.is_banter(nxt.text):
            return nxt.index
    return None


# --------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------


def _prefix_cost(speaker: str, bullets: bool) -> int:
    return _text.count_words(speaker + ":") + (1 if bullets else 0)


def _sentence_cap(budget: int) -> int:
    return max(_SENTENCE_CAP_MIN, min(_SENTENCE_CAP_MAX, budget // _SENTENCE_CAP_SHARE))


def _weight_sum(terms: Sequence[str], weights: dict[str, float]) -> float:
    return math.fsum(weights.get(t, 0.0) for t in terms)


def _standalone(c: _Cand, weights: dict[str, float], bullets: bool) -> float:
    cost = _prefix_cost(c.speaker, bullets) + min(_SENTENCE_CAP_MAX, _text.count_words(c.text))
    return _weight_sum(c.terms, weights) * c.boost / math.pow(cost, LENGTH_EXPONENT)


def _pool(cands: Sequence[_Cand], weights: dict[str, float], bullets: bool) -> list[_Cand]:
    """The turns worth a greedy look: best stand-alone turns, speakers, answers."""
    live = [c for c in cands if not c.filler]
    if len(live) <= POOL_SIZE:
        return live
    scored = sorted(live, key=lambda c: (-_standalone(c, weights, bullets), c.index))
    # Exact repeats (pasted spam, bot echoes) must not crowd the pool; the
    # greedy's Jaccard test deals with the near-duplicates among the rest.
    seen: set[str] = set()
    chosen: dict[int, _Cand] = {}
    for c in scored:
        key = c.text.casefold()
        if key not in seen:
            seen.add(key)
            chosen[c.index] = c
            if len(chosen) == POOL_SIZE:
                break
    # Participant coverage needs each active speaker's best turn in the pool.
    turns_per_speaker: Counter[str] = Counter(c.speaker for c in live)
    speakers = sorted(turns_per_speaker, key=lambda s: (-turns_per_speaker[s], s))
    wanted = set(speakers[:POOL_SPEAKERS])
    for c in scored:
        if not wanted:
            break
        if c.speaker in wanted:
            wanted.discard(c.speaker)
            chosen.setdefault(c.index, c)
    by_index = {c.index: c for c in live}
    for c in list(chosen.values()):
        if c.answer is not None and c.answer in by_index:
            chosen.setdefault(c.answer, by_index[c.answer])
    return [chosen[i] for i in sorted(chosen)]


def _units(c: _Cand, cap: int) -> list[_Unit]:
    sentences = _text.split_sentences(c.text) if len(c.terms) > 1 else [c.text]
    c.sentences = len(sentences)
    out: list[_Unit] = []
    for sentence in sentences:
        if len(sentences) > 1 and _text.is_filler(sentence):
            continue  # "Thanks." in front of the real message
        words = _text.count_words(sentence)
        cut = words > cap
        if cut:
            sentence = _text.truncate_words(sentence, cap)
            words = _text.count_words(sentence)
        terms = tuple(_text.unique_in_order(_text.tokenize(sentence)))
        out.append(_Unit(c, len(out), sentence, terms, frozenset(terms), words, cut))
    return out


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _select(
    cands: Sequence[_Cand], weights: dict[str, float], budget: int, bullets: bool
) -> list[tuple[_Cand, list[_Unit]]]:
    """Lazy-greedy budgeted coverage over sentences; returns turns in order with their picks."""
    cap = _sentence_cap(budget)
    pool = _pool(cands, weights, bullets)
    units = {c.index: _units(c, cap) for c in pool}
    turn_of = {c.index: c for c in pool}
    covered: set[str] = set()
    per_speaker: Counter[str] = Counter()
    pair_bonus: dict[int, float] = {}
    opened: dict[int, list[_Unit]] = {}
    opened_words: Counter[int] = Counter()
    done: set[tuple[int, int]] = set()
    too_long: set[tuple[int, int]] = set()
    picked_sets: list[frozenset[str]] = []
    remaining = budget

    def cost(u: _Unit) -> int:
        # The speaker label is paid once per turn, by its first sentence.
        opening = 0 if u.turn.index in opened else _prefix_cost(u.turn.speaker, bullets)
        return u.words + opening

    def score(u: _Unit) -> float:
        gain = math.fsum(weights.get(t, 0.0) for t in u.terms if t not in covered)
        c = u.turn
        factor = c.boost * (1.0 + pair_bonus.get(c.index, 0.0))
        factor *= 1.0 + _SPEAKER_BONUS / (1 + per_speaker[c.speaker])
        return gain * factor / math.pow(cost(u), LENGTH_EXPONENT)

    def push_turn(index: int) -> None:
        for u in units[index]:
            key = (index, u.pos)
            if key not in done:
                too_long.discard(key)
                heapq.heappush(heap, (-score(u), index, u.pos))

    # Gains only shrink as coverage grows and speakers get represented, so a
    # stale heap entry is an upper bound and lazy evaluation picks what plain
    # greedy would. The two ways a gain can grow (a turn's label already
    # paid; the question->answer pairing bonus) re-queue the affected turn.
    heap = [(-score(u), c.index, u.pos) for c in pool for u in units[c.index]]
    heapq.heapify(heap)
    while heap and remaining > 0:
        _, index, pos = heapq.heappop(heap)
        key = (index, pos)
        if key in done or key in too_long:
            continue
        u = units[index][pos]
        if cost(u) > remaining:
            too_long.add(key)  # may fit later, once its turn's label is paid
            continue
        if opened_words[index] + u.words > cap:
            done.add(key)  # one turn must not eat the summary
            continue
        if any(_jaccard(u.termset, other) >= DUPLICATE_JACCARD for other in picked_sets):
            done.add(key)
            continue
        fresh = score(u)
        if fresh <= 0.0:
            done.add(key)
            continue
        entry = (-fresh, index, pos)
        if heap and entry > heap[0]:
            heapq.heappush(heap, entry)  # someone else may be better now
            continue
        done.add(key)
        remaining -= cost(u)
        picked_sets.append(u.termset)
        covered.update(u.terms)
        c = u.turn
        if index not in opened:
            opened[index] = []
            per_speaker[c.speaker] += 1
            push_turn(index)
            if c.answer is not None and c.answer in turn_of and c.answer not in opened:
                pair_bonus[c.answer] = _PAIR_BONUS
                push_turn(c.answer)
        opened[index].append(u)
        opened_words[index] += u.words
    return [(turn_of[i], sorted(opened[i], key=lambda u: u.pos)) for i in sorted(opened)]


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


def _join(turn: _Cand, picked: Sequence[_Unit]) -> str:
    """The picked sentences of ``turn``; "…" marks that something was left out."""
    if len(picked) == turn.sentences and not any(u.cut for u in picked):
        return turn.text
    parts: list[str] = []
    for u in picked:
        # CJK sentences follow each other without a space.
        if parts and not parts[-1].endswith(_CJK_SENTENCE_END):
            parts.append(" ")
        parts.append(u.text)
    return "".join(parts).rstrip(_CUT_STRIP) + _ELLIPSIS


def _render(speaker: str, text: str, bullets: bool, dash: bool = True) -> str:
    label = f"{speaker}: " if speaker else ""
    if bullets:
        return f"- {label}{text}" if dash else f"{label}{text}"
    if not text.endswith(_SENTENCE_END):
        text += "."
    return f"{label}{text}"


def _fallback(
    cands: Sequence[_Cand], weights: dict[str, float], budget: int, bullets: bool
) -> tuple[_Cand, str]:
    """One line within a budget too small for any whole sentence plus its label.

    Prefers the densest single sentence that fits among the best turns;
    failing that, the best turn cut to fit.
    """
    live = [c for c in cands if not c.filler] or list(cands)
    ranked = sorted(live, key=lambda c: (-_standalone(c, weights, bullets), -len(c.text), c.index))
    best: tuple[float, int] | None = None
    best_line: tuple[_Cand, str] | None = None
    for c in ranked[:_FALLBACK_TURNS]:
        prefix = _prefix_cost(c.speaker, bullets)
        sentences = _text.split_sentences(c.text)
        for sentence in sentences:
            words = _text.count_words(sentence)
            if prefix + words > budget or (len(sentences) > 1 and _text.is_filler(sentence)):
                continue
            terms = _text.unique_in_order(_text.tokenize(sentence))
            density = (
                _weight_sum(terms, weights) * c.boost / math.pow(prefix + words, LENGTH_EXPONENT)
            )
            if best is None or (-density, c.index) < best:
                shown = sentence if len(sentences) == 1 else sentence.rstrip(_CUT_STRIP) + _ELLIPSIS
                best, best_line = (-density, c.index), (c, _render(c.speaker, shown, bullets))
    if best_line is not None:
        return best_line
    return ranked[0], _fit_line(ranked[0], weights, budget, bullets)


def _shorten(text: str, limit: int, weights: dict[str, float]) -> str:
    """``text`` if it fits ``limit`` words, else its most salient sentence(s) + "…"."""
    if _text.count_words(text) <= limit:
        return text
    sentences = _text.split_sentences(text)
    costs = [_text.count_words(s) for s in sentences]
    density = [
        _weight_sum(_text.unique_in_order(_text.tokenize(s)), weights)
        / math.pow(max(1, cost), LENGTH_EXPONENT)
        for s, cost in zip(sentences, costs, strict=True)
    ]
    order = sorted(range(len(sentences)), key=lambda k: (-density[k], k))
    keep: list[int] = []
    used = 0
    for k in order:
        if used + costs[k] <= limit:
            keep.append(k)
            used += costs[k]
    if keep:
        short = " ".join(sentences[k] for k in sorted(keep))
        return short.rstrip(_CUT_STRIP) + _ELLIPSIS
    return _salient_window(sentences[order[0]], limit, weights)


def _salient_window(sentence: str, limit: int, weights: dict[str, float]) -> str:
    """The ``limit``-word stretch of ``sentence`` with the most weight, with "…" marks.

    For a budget of a few words "Friday works…" says more than "I think we…".
    """
    tokens = sentence.split()
    sizes = [_text.count_words(tok) for tok in tokens]
    if any(size > 1 for size in sizes):
        # CJK runs: a window over whitespace tokens makes no sense; cut the front.
        return _text.truncate_words(sentence, limit).rstrip(_CUT_STRIP) + _ELLIPSIS
    prefix = [0.0]
    for tok in tokens:
        prefix.append(prefix[-1] + _weight_sum(_text.tokenize(tok), weights))
    width = min(limit, len(tokens))
    best_start, best = 0, -1.0
    for start in range(len(tokens) - width + 1):
        total = prefix[start + width] - prefix[start]
        if total > best:  # strict: ties keep the earliest window
            best_start, best = start, total
    window = " ".join(tokens[best_start : best_start + width])
    lead = _ELLIPSIS if best_start > 0 else ""
    tail = _ELLIPSIS if best_start + width < len(tokens) else ""
    return lead + (window.rstrip(_CUT_STRIP) if tail else window) + tail


def _fit_line(c: _Cand, weights: dict[str, float], budget: int, bullets: bool) -> str:
    """``c`` shortened to fit ``budget``, dropping the dash, then the label if needed."""
    label_cost = _text.count_words(c.speaker + ":")
    dash_cost = 1 if bullets else 0
    if budget - label_cost - dash_cost >= 1:
        return _render(
            c.speaker, _shorten(c.text, budget - label_cost - dash_cost, weights), bullets
        )
    if budget - label_cost >= 1:
        return _render(c.speaker, _shorten(c.text, budget - label_cost, weights), bullets, False)
    return _render("", _shorten(c.text, budget, weights), bullets, False)
