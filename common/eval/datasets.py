"""Documents for the eval harness's tasks, built from data the project already has.

    docs = build("instruct:test")            # Sprint 5's verifiable instructions, held-out phrasings
    docs = build("instruct:test:lookup")     # one family
    docs = build("story_endings")            # held-out TinyStories: which sentence comes next?
    docs = build("story_cloze")              # held-out TinyStories: the missing last word (LAMBADA-style)
    docs = build("story_xsum")               # held-out TinyStories: the opening sentence as the summary
    docs = build("wikitext2:test")           # WikiText-2 articles, for perplexity and bits per byte
    docs = build("tinystories_heldout")      # the held-out stories, for perplexity and bits per byte

A document is a plain dict; a task's templates name its fields. Everything is deterministic: distractors
and shuffles are drawn from seeded generators, so a document set is the same on every machine.

**Held out means held out.** The TinyStories tasks use only the stories of the last 5% of the project's
TinyStories slice, the part `posttrain.pretraining_text` keeps for validation, so the base model never
trained on them. The Sprint 5 instruction tasks use the test split, whose phrasings SFT never saw.
WikiText-2 is the word-level tokenised release (`<unk>`, ` @-@ `): scores on it are not comparable with
numbers on the raw release, which most papers quote.
"""

from __future__ import annotations

import hashlib
import random
import re
from functools import lru_cache

from common.data import instruct
from common.data.chat import to_ascii

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
HELDOUT_FRAC = 0.05       # posttrain.pretraining_text's val_frac
SFT_PER_FAMILY = 3000     # posttrain.SFTRecipe's n_per_family: the splits Sprint 5 trained and scored on


def build(spec: str) -> list[dict]:
    """The documents of a dataset spec "name" or "name:arg[:arg]" (a fresh list; the dicts are shared)."""
    name, *args = spec.split(":")
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILDERS))}")
    return list(BUILDERS[name](*args))


def _rng(*key) -> random.Random:
    """A generator seeded by a stable hash of `key` (Python's hash() of a str changes between runs)."""
    return random.Random(int(hashlib.sha256(repr(key).encode()).hexdigest()[:16], 16))


# ---------------------------------------------------------------------------------------------- instructions


def numeric_distractors(answer: str, rng: random.Random, k: int = 3) -> list[str]:
    """k wrong numbers a model might plausibly write: off by one or ten, doubled, halved, digits reversed."""
    a = int(answer)
    pool = {a + 1, a - 1, a + 10, a - 10, 2 * a, a // 2, int(str(abs(a))[::-1]) * (1 if a >= 0 else -1), -a}
    pool = sorted(str(x) for x in pool if x != a)
    return rng.sample(pool, k)


def string_distractors(answer: str, rng: random.Random, k: int = 3) -> list[str]:
    """k wrong strings close to the answer: two neighbours swapped, one character dropped, doubled or changed to
    the next letter or digit, or the whole string reversed."""
    nxt = {c: a for s in ("abcdefghijklmnopqrstuvwxyza", "0123456789") for c, a in zip(s, s[1:])}
    pool = set()
    for i in range(len(answer) - 1):
        pool.add(answer[:i] + answer[i + 1] + answer[i] + answer[i + 2:])
    for i in range(len(answer)):
        pool.add(answer[:i] + answer[i + 1:])
        pool.add(answer[:i] + answer[i] + answer[i:])
        pool.add(answer[:i] + nxt.get(answer[i], answer[i]) + answer[i + 1:])
    pool.add(answer[::-1])
    pool = sorted(p for p in pool if p.strip() and p != answer)
    return rng.sample(pool, min(k, len(pool)))


@lru_cache(maxsize=4)
def _instruct_split(split: str, n_per_family: int) -> tuple:
    return tuple(instruct.generate(n_per_family, 0)[split])


def instruct_docs(split: str = "test", family: str = "", n_per_family: str = str(SFT_PER_FAMILY)) -> list[dict]:
    """Sprint 5's instructions as documents: question, answer, family, and four shuffled choices (the answer
    and three near misses) for multiple choice."""
    if split not in instruct.SPLITS:
        raise ValueError(f"unknown instruct split {split!r}; choose from {instruct.SPLITS}")
    if family and family not in instruct.FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {instruct.FAMILIES}")
    docs = []
    for ex in _instruct_split(split, int(n_per_family)):
        if family and ex.family != family:
            continue
        rng = _rng("instruct", ex.prompt)
        numeric = re.fullmatch(r"-?\d+", ex.answer) is not None
        wrong = numeric_distractors(ex.answer, rng) if numeric else string_distractors(ex.answer, rng)
        choices = [ex.answer] + wrong
        rng.shuffle(choices)
        docs.append({"family": ex.family, "question": ex.prompt, "answer": ex.answer, "choices": choices})
    return docs


# ---------------------------------------------------------------------------------------------- stories


@lru_cache(maxsize=1)
def heldout_stories() -> tuple[str, ...]:
    """The TinyStories stories that start inside the held-out tail of the slice (ASCII-folded, as trained)."""
    from common.data import registry

    text = to_ascii(registry.load_text("tinystories", "TinyStories-train-first2MiB.txt"))
    cut = int(len(text) * (1 - HELDOUT_FRAC))
    stories, pos = [], 0
    for part in text.split("<|endoftext|>"):
        if pos >= cut and part.strip():
            stories.append(part.strip())
        pos += len(part) + len("<|endoftext|>")
    return tuple(stories)


def sentences(story: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(story.replace("\n", " ")) if s.strip()]


def story_text_docs() -> list[dict]:
    return [{"text": s} for s in heldout_stories()]


def story_ending_docs(per_story: int = 10) -> list[dict]:
    """Which sentence comes next? Up to `per_story` positions per held-out story (every sentence from the third
    on, evenly spaced): the context is the story so far, the choices the true next sentence and three
    sentences drawn from other stories. Documents from one story share its context, so they are not
    independent: an interval over them is narrower than one over stories would be."""
    stories = [sentences(s) for s in heldout_stories()]
    pool = [(i, x) for i, s in enumerate(stories) for x in s]
    docs = []
    for i, sent in enumerate(stories):
        positions = list(range(2, len(sent)))
        if len(positions) > per_story:
            positions = [positions[round(k * (len(positions) - 1) / (per_story - 1))] for k in range(per_story)]
        for k in positions:
            rng = _rng("next", i, k)
            wrong = []
            while len(wrong) < 3:
                j, x = pool[rng.randrange(len(pool))]
                if j != i and x != sent[k] and x not in wrong:
                    wrong.append(x)
            choices = [sent[k]] + wrong
            rng.shuffle(choices)
            docs.append({"story": i, "context": " ".join(sent[:k]), "ending": sent[k], "choices": choices})
    return docs


WORD = re.compile(r"([A-Za-z]+)([.!?,\"']*)$")


def story_cloze_docs() -> list[dict]:
    """LAMBADA-style cloze: sentences of the held-out stories whose last word is a capitalised word (a name,
    mostly) that already appeared in the story before; the model must produce that word. Reading
    comprehension in its simplest form: the answer is in the context, the model has to find it."""
    docs = []
    for i, story in enumerate(heldout_stories()):
        sents = sentences(story)
        for k in range(1, len(sents)):
            m = WORD.search(sents[k])
            if not m or not m.group(1)[0].isupper() or len(m.group(1)) < 3:
                continue
            before = " ".join(sents[:k]) + " " + sents[k][:m.start()]
            if re.search(rf"\b{m.group(1)}\b", sents[k][:m.start()]) or m.group(1) not in " ".join(sents[:k]):
                continue
            docs.append({"story": i, "context": before.rstrip(), "word": m.group(1)})
    # choices for the multiple-choice version: the answer and three other names of the same story (words
    # capitalised in mid-sentence), topped up from other stories' answers when the story has too few
    answers = sorted({d["word"] for d in docs})
    for k, d in enumerate(docs):
        rng = _rng("cloze", k)
        story = heldout_stories()[d["story"]]
        own = sorted({w for w in re.findall(r"(?<=[a-z,] )[A-Z][a-z]{2,}\b", story) if w != d["word"]} - COMMON_CAPS)
        wrong = rng.sample(own, min(3, len(own)))
        wrong += rng.sample([a for a in answers if a != d["word"] and a not in wrong], 3 - len(wrong))
        d["choices"] = [d["word"]] + wrong
        rng.shuffle(d["choices"])
    return docs


# sentence-initial words that are capitalised only by position, not names: not used as distractors
COMMON_CAPS = {"The", "They", "She", "Her", "His", "One", "Once", "Then", "But", "And", "When", "Can", "You", "Yes",
               "Let", "What", "This", "That", "There", "Now", "Thank", "Together", "After", "From", "Why", "Don",
               "Look", "Wow", "Suddenly", "Finally", "Every", "Some", "It", "Its", "Soon", "With", "Are", "Please",
               "Sorry", "Maybe", "Who", "How", "Where", "Here", "Not", "Just", "Come", "Okay", "Will", "All", "Mom",
               "Dad", "Mommy", "Daddy", "Mum"}


def story_xsum_docs() -> list[dict]:
    """XSum-style pseudo-summaries: the story's opening sentence is the summary, the rest the document.
    Also two reference points for the metric: `lead` (the document's own first sentence) and `other` (the
    opening sentence of a different story)."""
    stories = [sentences(s) for s in heldout_stories()]
    stories = [s for s in stories if len(s) >= 4]
    docs = []
    for i, sent in enumerate(stories):
        other = stories[(i + 1) % len(stories)][0]
        docs.append({"document": " ".join(sent[1:]), "summary": sent[0], "lead": sent[1], "other": other})
    return docs


# ---------------------------------------------------------------------------------------------- WikiText-2

HEADING = re.compile(r"^ = [^=].* = $")


@lru_cache(maxsize=3)
def _wikitext_articles(split: str) -> tuple[str, ...]:
    from common.data import registry

    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown WikiText-2 split {split!r}; choose from train, valid, test")
    articles, cur = [], []
    for line in registry.load_text("wikitext2", f"{split}.txt").split("\n"):
        if HEADING.match(line) and cur:
            articles.append("\n".join(cur).strip("\n"))
            cur = []
        cur.append(line)
    if cur:
        articles.append("\n".join(cur).strip("\n"))
    return tuple(a for a in articles if a.strip())


def wikitext_docs(split: str = "test") -> list[dict]:
    """WikiText-2 articles (from one top-level heading to the next), text as in the file."""
    return [{"text": a} for a in _wikitext_articles(split)]


BUILDERS = {"instruct": instruct_docs, "story_endings": story_ending_docs, "story_cloze": story_cloze_docs,
            "story_xsum": story_xsum_docs, "wikitext2": wikitext_docs, "tinystories_heldout": story_text_docs}
