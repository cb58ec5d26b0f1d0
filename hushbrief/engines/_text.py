"""Language-neutral text helpers for the embedded engines (stdlib only).

Tokenization is Unicode-aware: a "word" is a run of word characters (``\\w``,
so Latin, Cyrillic, Greek, Arabic, Hangul, ... all work). Scripts written
without spaces between words (Han, Hiragana, Katakana, Thai, Lao, Khmer,
Myanmar) have no word boundaries a regex could find, so runs of them are
turned into overlapping character bigrams instead — the usual dictionary-free
choice for CJK retrieval. Everything is case-folded.

The same notion of script drives :func:`count_words`, the measure used for the
``max_words`` budget: whitespace-separated tokens, except that every character
of a no-space script counts as one word (Chinese and Japanese length limits
are usually stated in characters, and one word per character is never more
lenient than a plain ``len(text.split())``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Scripts without spaces between words. Hangul is deliberately absent: Korean
# separates words with spaces, so ordinary word tokens work for it.
_NOSPACE_RANGES = (
    "\u0e00-\u0e7f"  # Thai
    "\u0e80-\u0eff"  # Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3005\u3006\u3007"  # CJK iteration / closing marks, ideographic zero
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0002ebef"  # CJK extensions B-F
)

# One alternation instead of a per-character loop: the regex engine does the
# script split in C, which matters for 10,000-message threads.
_TOKEN_RE = re.compile(rf"([{_NOSPACE_RANGES}]+)|([^\W{_NOSPACE_RANGES}]+)")
_NOSPACE_RE = re.compile(f"[{_NOSPACE_RANGES}]")
# A sentence ends at terminal punctuation followed by a space (but not after
# "Mr." or an initial: "Mr. Zhang" is one name), or at CJK terminal
# punctuation (not followed by a space in those scripts), or at a line break.
_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Prof", "vs", "etc", "e.g", "i.e", "z.B", "т.е")
_NOT_AFTER = "".join(rf"(?<!\b{re.escape(a)}\.)" for a in _ABBREVIATIONS)
_SENTENCE_END_RE = re.compile(
    rf"(?<=[.!?…]){_NOT_AFTER}(?<!\b[A-Z]\.)\s+|(?<=[。！？])\s*|\s*\n\s*"
)


def tokenize(text: str) -> list[str]:
    """Case-folded word tokens of ``text``, with character bigrams for CJK/Thai runs.

    Tokens come in text order (with repeats), which callers rely on for
    deterministic floating-point sums.
    """
    out: list[str] = []
    for nospace, word in _TOKEN_RE.findall(text.casefold()):
        if word:
            out.append(word)
        elif len(nospace) == 1:
            out.append(nospace)
        else:
            out.extend(nospace[i : i + 2] for i in range(len(nospace) - 1))
    return out


def unique_in_order(tokens: Iterable[str]) -> list[str]:
    """Distinct tokens in first-occurrence order (never set order)."""
    return list(dict.fromkeys(tokens))


def normalize_space(text: str) -> str:
    """Collapse every whitespace run (including newlines) to one space."""
    return " ".join(text.split())


def _token_words(token: str) -> int:
    # One word per no-space-script character, and at least one per token.
    return max(1, len(_NOSPACE_RE.findall(token)))


def count_words(text: str) -> int:
    """Words of ``text`` as the ``max_words`` budget counts them.

    Whitespace-separated tokens, where a token containing CJK/Thai characters
    counts one word per such character. Always ``>= len(text.split())``.
    """
    if not _NOSPACE_RE.search(text):
        return len(text.split())
    return sum(_token_words(tok) for tok in text.split())


def truncate_words(text: str, limit: int) -> str:
    """The longest prefix of ``text`` (whitespace-normalized) within ``limit`` words.

    Cuts inside a CJK/Thai run at a character boundary when that run alone
    exceeds the remaining budget. Returns "" for ``limit < 1``.
    """
    if limit < 1:
        return ""
    kept: list[str] = []
    used = 0
    for tok in text.split():
        n = _token_words(tok)
        if used + n <= limit:
            kept.append(tok)
            used += n
            continue
        room = limit - used
        if room > 0 and n > 1:
            # Keep characters until `room` no-space characters are in.
            seen = 0
            for pos, ch in enumerate(tok):
                if _NOSPACE_RE.match(ch):
                    if seen == room:
                        kept.append(tok[:pos])
                        break
                    seen += 1
            else:  # pragma: no cover - n > room guarantees the break above
                kept.append(tok)
        break
    return " ".join(kept)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (non-empty, whitespace-normalized)."""
    parts = _SENTENCE_END_RE.split(text)
    return [s for s in (normalize_space(p) for p in parts) if s]


# --------------------------------------------------------------------------
# Small built-in lexicons. They only nudge the weighting; the in-dialogue
# document frequency does most of the work, so a language missing here still
# gets sensible (if slightly noisier) summaries.
# --------------------------------------------------------------------------


def _words(blob: str) -> frozenset[str]:
    return frozenset(blob.split())


STOPWORDS: dict[str, frozenset[str]] = {
    # Contraction fragments ("t", "ll", "ve", ...) are listed because the
    # tokenizer splits "don't" into "don" + "t".
    "en": _words(
        """a about above after again against all am an and any are aren as at be because
        been before being below between both but by can could couldn d did didn do does
        doesn doing don down during each few for from further had hadn has hasn have
        haven having he her here hers herself him himself his how i if in into is isn it
        its itself just ll m me more most my myself no nor not now of off on once only or
        other our ours ourselves out over own re s same shan she should shouldn so some
        such t than that the their theirs them themselves then there these they this
        those through to too under until up ve very was wasn we were weren what when
        where which while who whom why will with won would wouldn you your yours
        yourself yourselves also yes yeah oh well get got go going really know think
        want like much many thing things one mr mrs ms let us okay ok sure""",
    ),
    "de": _words(
        """der die das den dem des ein eine einen einem einer eines und oder aber doch ich
        du er sie es wir ihr mich mir dich dir sich uns euch ihn ihm ihnen mein meine
        meinen dein deine sein seine seinen ihre unser unsere euer ist sind war waren bin
        bist seid hat habe hast haben hatte hatten wird werden würde würden kann kannst
        können muss müssen soll sollen will wollen nicht kein keine keinen auch noch schon
        nur so wie was wer wo wann warum dass daß wenn weil als mit von zu zum zur im in
        am an auf aus bei für nach über unter vor durch um bis gegen ohne mal ja nein
        denn dann da hier dort jetzt sehr mehr ganz gut also eben halt man einfach
        diese dieser dieses diesem diesen etwas alles alle""",
    ),
    "fr": _words(
        """le la les l un une des du de d et ou mais donc car ni je j tu il elle on nous
        vous ils elles me m te t se s moi toi lui leur leurs y en ce c cet cette ces mon
        ma mes ton ta tes son sa ses notre nos votre vos est sont suis es êtes sommes
        être a ai as avons avez ont avoir était étais fait pas ne n plus que qu qui quoi
        dont où pour par avec sans sur sous dans chez très bien aussi alors comme si
        tout tous toute oui non ça ca au aux""",
    ),
    "es": _words(
        """el la los las un una unos unas y o pero que de del al a en con por para sin
        sobre entre yo tú tu él ella nosotros vosotros ellos ellas me te se nos os le
        les lo mi mis su sus es son soy eres somos está están estoy estás ser estar ha
        he has han hay fue era no sí si muy más ya también como cuando donde qué quién
        este esta esto ese esa eso pues bueno vale todo""",
    ),
    "it": _words(
        """il lo la i gli le l un uno una e o ma che di del della dei delle a al alla da
        in con su per tra fra io tu lui lei noi voi loro mi ti si ci vi è sono sei
        siamo essere ho hai ha abbiamo hanno non sì no più molto anche come quando dove
        questo questa quello quella cosa""",
    ),
    "pt": _words(
        """o a os as um uma e ou mas que de do da dos das em no na nos nas por para com
        sem eu tu ele ela nós vocês eles elas me te se lhe meu minha seu sua é são sou
        está estão estou ser estar tem ter foi não sim muito mais já também como quando
        onde isso isto esse essa aquele""",
    ),
    "nl": _words(
        """de het een en of maar ik je jij hij zij wij we jullie ze u mij me mijn jouw
        zijn haar ons onze is ben bent was waren heb hebt heeft hebben had niet geen ook
        nog al wel dan dat die dit deze wat wie waar wanneer waarom in op aan met van
        voor naar bij uit om over door te tot zo er hier daar ja nee""",
    ),
    "ru": _words(
        """и в во не что он на я с со как а то все всё она так его но да ты к у же вы за
        бы по только ее её мне было вот от меня еще ещё нет о из ему теперь когда даже
        ну ли если уже или ни быть был него до вас нибудь опять уж вам ведь там потом
        себя ничего ей может они тут где есть ней для мы тебя их чем была сам чтоб без
        чего раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним
        здесь этом один почти мой тем чтобы нее сейчас были куда зачем всех никогда
        можно при об другой хоть после над больше тот через эти нас про всего них какая
        много разве эту моя свою этой перед иногда лучше чуть том такой им более всегда
        конечно всю между это просто""",
    ),
}

# Whole-turn filler: a turn made only of these (plus punctuation/emoji) carries
# no content. Laughter is matched by pattern below instead of being listed.
FILLER_WORDS: frozenset[str] = _words(
    """ok okay k kk okey okie oki yes yeah yea yep yup ya no nope nah sure thanks thank
    thx ty tnx tks cheers lol lmao rofl ha haha hahaha hehe heh hi hey hello hiya yo bye
    cya good morning night evening afternoon cool nice great wow oh ah uh um hmm hm np
    yw welcome right alright fine true indeed gotcha noted
    all everyone everybody guys folks team you too much so very a lot the for it that
    is me again man dude bro mate there same here
    really why certainly correct exactly absolutely definitely of course i see s pretty
    wonderful excellent perfect awesome fantastic interesting maybe sorry please sir madam
    ma am miss dear honey
    danke ja nein jo jup genau super gut hallo moin servus tschüss guten morgen abend
    nacht tag alle leute
    ок окей ok да нет спасибо пасиб спс привет пока ага угу лол ясно понятно хорошо
    ладно норм всем доброе утро добрый день вечер спокойной ночи класс круто
    merci oui non salut bonjour bonsoir ouais mdr
    gracias sí si hola adiós buenas buenos días jaja
    obrigado obrigada oi olá sim não
    grazie ciao
    ありがとう ありがとうございます はい うん 了解 りょうかい おはよう こんにちは 草 www 笑
    おはようございます こんばんは お疲れ様です お疲れさまです よろしくお願いします
    好的 好 谢谢 谢谢你 嗯 对 是的 收到 哦 大家好 你好 您好 早上好 晚安 zusammen 1""",
)

# Laughter in several scripts: "haha", "ahahah", "jajaja", "хахаха", "哈哈".
# At least two beats, so that "ha", "he", "ja", "je" stay words.
_LAUGH = (
    r"a?(?:(?:ha){2,}|(?:he){2,}|(?:hi){2,}|(?:ja){2,}|(?:je){2,}|(?:ха){2,}|(?:хе){2,}"
    r"|(?:ах){2,})h?х?|[哈呵]{2,}"
)
_BANTER_WORDS = "lol lmao lmfao rofl xd xdd лол ржу кек mdr kkk 草 笑"
LAUGH_RE = re.compile(rf"^(?:{_LAUGH}|{'|'.join(_BANTER_WORDS.split())})$")
# The same as a search over a whole case-folded turn, plus emoji, in one pass.
_BANTER_RE = re.compile(
    rf"(?<!\w)(?:{_LAUGH}|{'|'.join(_BANTER_WORDS.split())})(?!\w)"
    "|[\U0001f300-\U0001faff\u2600-\u27bf]"
)

# Action items and commitments. Matched on case-folded text with apostrophes
# normalized (see ``normalize_for_cues``). Latin/Cyrillic entries get word
# boundaries; CJK entries are plain substrings.
_ACTION_SPACED = r"""
i will|i'll|i can do|i'm going to|i am going to|i'll take|i will take|i'm on it|on it
|we will|we'll|we need to|we have to|we must|need to|needs to|have to|has to|must
|let's|let us|can you|could you|would you|will you|please|pls|plz
|todo|to-do|to do list|action item|deadline|due date|due by|due on
|by (?:tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|saturday|sunday|eod|eow|noon)
|asap|follow up|remind|assigned to|assign
|ich werde|ich mache|mache ich|ich kümmere|ich übernehme|wir müssen|müssen wir|kannst du
|könntest du|können sie|könnten sie|bitte|lass uns|lasst uns|frist|bis morgen|erledige
|я сделаю|сделаю|займусь|подготовлю|отправлю|напишу|давай|давайте|можешь|можете|не мог бы
|не могли бы|пожалуйста|нужно|надо|необходимо|должен|должна|должны|срок|дедлайн|до завтра
|к завтра
|je vais|je m'en occupe|on va|il faut|peux-tu|pouvez-vous|tu peux|vous pouvez
|s'il te plaît|s'il vous plaît|stp|svp|échéance|date limite|d'ici demain
|voy a|vamos a|me encargo|hay que|tenemos que|tengo que|puedes|podrías|por favor|plazo
|fecha límite|para mañana
|farò|lo faccio|dobbiamo|devo|puoi|potresti|per favore|scadenza|entro domani
|vou|vamos|preciso|precisamos|temos que|você pode|prazo
"""
_ACTION_CJK = """します やります やっておきます お願い おねがい ください 下さい 締め切り 締切 期限
までに しましょう 担当 我会 我来 我去 我负责 请 麻烦 截止 期限 之前 需要 必须 我们来 任务 负责"""

_DECISION_SPACED = r"""
decided|decide|decision|agreed|agree on|let's go with|we'll go with|go with|settled
|final|finalized|approved|confirmed|confirm|works for me|sounds good|deal|we will go
|entschieden|beschlossen|einigen|geeinigt|abgemacht|machen wir|bestätigt|passt
|решили|решено|договорились|согласен|согласна|подтверждаю|утвердили|принято|так и сделаем
|décidé|décision|d'accord|convenu|validé|confirmé|on part sur
|decidimos|decidido|acordamos|de acuerdo|confirmado|queda
|deciso|d'accordo|confermato|combinado|fechado
"""
_DECISION_CJK = "決定 決め 決まり 合意 確定 承認 决定 确定 同意 就这么 定了"

_QUESTION_START = r"""
who|what|when|where|why|how|which|whose|whom|shall|should|could|would|can|do|does|did
|is|are|will|wer|was|wann|wo|warum|wie|welche|welcher|kannst|können|кто|что|когда|где
|почему|зачем|как|какой|сколько|qui|quoi|quand|où|pourquoi|comment|quel|quelle|qué|quién
|cuándo|dónde|cómo|cuál
"""


def _cue_re(spaced: str, cjk: str) -> re.Pattern[str]:
    alts = [a.strip() for a in spaced.split("|") if a.strip()]
    # Longest first so that "i'll take" wins over "i'll" (only matters for
    # readability of matches; the boolean result is the same).
    alts.sort(key=lambda a: (-len(a), a))
    spaced_part = r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)"
    cjk_part = "|".join(re.escape(w) for w in cjk.split())
    return re.compile(spaced_part + ("|" + cjk_part if cjk_part else ""))


ACTION_RE = _cue_re(_ACTION_SPACED, _ACTION_CJK)
DECISION_RE = _cue_re(_DECISION_SPACED, _DECISION_CJK)
QUESTION_START_RE = re.compile(
    r"^\W*(?:" + "|".join(a.strip() for a in _QUESTION_START.split("|") if a.strip()) + r")(?!\w)"
)
# "?" in any script, or a sentence-final Japanese/Chinese question particle.
QUESTION_MARK_RE = re.compile(r"[?？¿]|(?:か|吗|呢)[。\s]*$")

_APOSTROPHE_RE = re.compile(r"\s*['’`´]\s*")
_WORD_RE = re.compile(r"\w+")


def normalize_for_cues(text: str) -> str:
    """Case-fold and glue apostrophes ("I ' ll" / "I’ll" -> "i'll") for cue matching."""
    return _APOSTROPHE_RE.sub("'", text.casefold())


# Greeting and politeness formulas; what is left after removing them (and
# filler words) decides whether a turn says anything.
_GREETING_RE = re.compile(
    r"(?<!\w)(?:how are you(?: doing)?(?: today)?|how are things|how's it going|how is it going"
    r"|how do you do|how have you been|nice to meet you|pleased to meet you|what's up|whats up"
    r"|(?:may|can|could) i help you|what can i do for you|i'm fine|i am fine|i'm good"
    r"|i'm ok|not bad|good (?:morning|afternoon|evening|night|day)|excuse me|you're welcome"
    r"|see you(?: later| soon| tomorrow)?|take care|wie geht'?s|wie geht es dir|как дела"
    r"|как ты|comment ça va|ça va|qué tal|cómo estás|come stai|tudo bem)(?!\w)"
)


def is_laughter(word: str) -> bool:
    """True for a case-folded laughter token ("lol", "hahaha", "哈哈")."""
    return LAUGH_RE.match(word) is not None


def is_banter(text: str) -> bool:
    """True if ``text`` laughs or uses emoji: a hint of chatter, not of substance."""
    return _BANTER_RE.search(text.casefold()) is not None


def is_filler(text: str) -> bool:
    """True for greetings, acknowledgements, laughter and emoji/punctuation-only turns."""
    if len(text) > 160 or text.count(" ") > 20:
        return False  # cheap exit: filler is short, and most turns are not filler
    folded = _GREETING_RE.sub(" ", normalize_for_cues(text))
    words = _WORD_RE.findall(folded)
    if not words:
        return True
    if len(words) > 6:
        return False
    return all(w in FILLER_WORDS or LAUGH_RE.match(w) is not None for w in words)
