"""Quality of the ``extractive`` engine against LEAD-3 on the DialogSum dev split.

Usage (the data set is never copied into this repository)::

    git -C /work/.mirror/cylnlp+dialogsum/repo show \\
        HEAD:DialogSum_Data/dialogsum.dev.jsonl > /tmp/dialogsum.dev.jsonl
    python bench/quality_dialogsum.py --data /tmp/dialogsum.dev.jsonl [--limit N] [--max-words N]

Fairness choices:

* Speakers ``#PersonN#`` become engine turns by ``PN``; LEAD-3 is rendered
  through the very same bullet format ("- P1: text") as the engine output.
* Speaker labels and bullet dashes are stripped from *both* systems before
  scoring. The references name people "#Person1#", which ROUGE's tokenizer
  turns into "person1" and our "P1" labels never match, so keeping labels
  would only add the same kind of noise to both; stripping them scores what
  was actually selected.
* Budget. LEAD-3 is three turns by definition. By default the engine gets,
  per dialogue, exactly as many words as that dialogue's LEAD-3 rendering has
  (labels included, counted by the engine's own ``count_words``): ROUGE F1 is
  length sensitive, so a length-matched comparison is the honest one. With
  ``--max-words N`` the engine instead gets a fixed budget of N words.
* ROUGE-1/2/L F1 from the ``rouge-score`` package (Google's reimplementation
  of Lin's ROUGE): lowercase, non-alphanumerics dropped, no Porter stemmer
  unless ``--stem``. The dev split has a single reference per dialogue.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hushbrief.engines._text import count_words
from hushbrief.engines.base import Style, SummaryOptions, Turn
from hushbrief.engines.extractive import ExtractiveEngine

_SPEAKER_RE = re.compile(r"^#Person(\d+)#:\s*(.*)$")
_LABEL_RE = re.compile(r"^(?:-\s+)?P\d+:\s*", re.MULTILINE)


def parse_dialogue(dialogue: str) -> list[Turn]:
    """DialogSum "#Person1#: text" lines -> engine turns by "P1"."""
    turns: list[Turn] = []
    for line in dialogue.split("\n"):
        m = _SPEAKER_RE.match(line.strip())
        if m:
            turns.append(Turn(speaker=f"P{m.group(1)}", text=m.group(2)))
        elif line.strip() and turns:
            # A continuation line belongs to the previous speaker.
            prev = turns[-1]
            turns[-1] = Turn(prev.speaker, f"{prev.text} {line.strip()}")
    return turns


def render_bullets(turns: Sequence[Turn]) -> str:
    """The same "- P1: text" bullets the engine prints, for baselines."""
    return "\n".join(f"- {t.speaker}: {' '.join(t.text.split())}" for t in turns)


def strip_labels(text: str) -> str:
    """Scored text: bullet dashes and speaker labels removed, one space-joined string."""
    return " ".join(_LABEL_RE.sub("", text).split())


def lead3(turns: Sequence[Turn]) -> str:
    """LEAD-3: the first three turns."""
    return render_bullets(turns[:3])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="dialogsum.dev.jsonl")
    parser.add_argument("--limit", type=int, default=None, help="first N dialogues only")
    parser.add_argument(
        "--max-words",
        type=int,
        default=None,
        help="fixed engine budget; default: length-matched to each dialogue's LEAD-3",
    )
    parser.add_argument("--stem", action="store_true", help="Porter-stem before scoring")
    args = parser.parse_args(argv)

    try:
        from rouge_score import rouge_scorer  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        print("needs the rouge-score package: pip install rouge-score", file=sys.stderr)
        return 2
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=args.stem)

    rows = []
    with args.data.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
    if args.limit is not None:
        rows = rows[: args.limit]

    engine = ExtractiveEngine()

    def run_engine(turns: Sequence[Turn], budget: int) -> str:
        opts = SummaryOptions(max_words=budget, style=Style.BULLETS)
        return engine.summarize(turns, opts).text

    systems: dict[str, Callable[[Sequence[Turn], int], str]] = {
        "LEAD-3": lambda turns, _budget: lead3(turns),
        "extractive": run_engine,
    }
    scores: dict[str, dict[str, list[float]]] = {
        name: {"rouge1": [], "rouge2": [], "rougeL": [], "words": []} for name in systems
    }
    budgets: list[int] = []
    for row in rows:
        turns = parse_dialogue(row["dialogue"])
        budget = args.max_words or count_words(lead3(turns))
        budgets.append(budget)
        for name, system in systems.items():
            hyp = strip_labels(system(turns, budget))
            result = scorer.score(row["summary"], hyp)
            for key in ("rouge1", "rouge2", "rougeL"):
                scores[name][key].append(result[key].fmeasure)
            scores[name]["words"].append(float(len(hyp.split())))

    how = f"fixed {args.max_words}" if args.max_words else "length-matched to LEAD-3"
    print(
        f"DialogSum dev, {len(rows)} dialogues; engine budget: {how} "
        f"(mean {statistics.fmean(budgets):.1f} words incl. labels); "
        f"stemmer: {'on' if args.stem else 'off'}"
    )
    print(f"{'system':<12} {'R-1':>6} {'R-2':>6} {'R-L':>6} {'words':>6}")
    for name, s in scores.items():
        print(
            f"{name:<12} {100 * statistics.fmean(s['rouge1']):6.2f} "
            f"{100 * statistics.fmean(s['rouge2']):6.2f} "
            f"{100 * statistics.fmean(s['rougeL']):6.2f} {statistics.fmean(s['words']):6.1f}"
        )
    for key, label in (("rouge1", "R-1"), ("rouge2", "R-2"), ("rougeL", "R-L")):
        diffs = [
            a - b for a, b in zip(scores["extractive"][key], scores["LEAD-3"][key], strict=True)
        ]
        low, high = paired_bootstrap(diffs)
        print(
            f"extractive - LEAD-3 {label}: {100 * statistics.fmean(diffs):+.2f} "
            f"(95% paired bootstrap CI {100 * low:+.2f} .. {100 * high:+.2f})"
        )
    return 0


def paired_bootstrap(diffs: Sequence[float], rounds: int = 2000) -> tuple[float, float]:
    """2.5th and 97.5th percentile of the mean per-dialogue difference (fixed seed)."""
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


if __name__ == "__main__":
    raise SystemExit(main())
