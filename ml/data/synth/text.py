"""The free text of a ticket: short description and description from templates, noisy on purpose."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence

from ml.data.synth.catalogues import (
    DETAILS,
    GLOBAL_FILL,
    OTHER_SYSTEM,
    PREFIXES,
    SUFFIXES,
    SYMPTOMS,
    VAGUE_DESC,
    VAGUE_SHORT,
    WAIT_HINTS,
    RootCause,
    System,
)

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _typos(rnd: random.Random, text: str, rate: float = 0.07) -> str:
    """Swap or drop a character in some longer words, as hurried users do."""
    words = text.split(" ")
    for i, word in enumerate(words):
        w = word.rstrip(".,:;!?)'")  # keep trailing punctuation intact
        if len(w) > 3 and rnd.random() < rate:
            j = rnd.randrange(len(w) - 1)
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :] if rnd.random() < 0.5 else w[:j] + w[j + 1 :]
            words[i] = w + word[len(word.rstrip(".,:;!?)'")) :]
    return " ".join(words)


def _fill(rnd: random.Random, template: str, system: System, location: str) -> str:
    def pick(m: re.Match[str]) -> str:
        key = m.group(1)
        if key == "alias":
            return rnd.choice(system.aliases)
        if key == "obj":
            return rnd.choice(system.objects)
        if key == "code":
            return rnd.choice(system.codes)
        if key == "host":
            return rnd.choice(system.hosts)
        if key == "users":
            return str(int(math.exp(rnd.uniform(0, math.log(300)))))
        if key == "location":
            return location
        return rnd.choice(GLOBAL_FILL[key])

    return _PLACEHOLDER.sub(pick, template)


def ticket_text(
    rnd: random.Random,
    system: System,
    category: str,
    subcategory: str,
    cause: RootCause | None,
    vague: bool,
    location: str,
    other_aliases: Sequence[str],
    wait_hint: bool = False,
) -> tuple[str, str]:
    """Short description and 1-4 sentence description (plus the wait hint if asked) for one ticket, noisy on purpose."""
    symptom = _fill(rnd, rnd.choice(SYMPTOMS[(category, subcategory)]), system, location)
    use_cause = cause is not None and rnd.random() < 0.9
    if vague:
        short = rnd.choice(VAGUE_SHORT)
        if rnd.random() < 0.3:
            short = f"{rnd.choice(system.aliases)} {short}"
    elif use_cause:
        short = _fill(rnd, rnd.choice(cause.short), system, location)
    else:
        alias = rnd.choice(system.aliases)
        r = rnd.random()
        if r < 0.35:
            short = f"{alias}: {symptom}"
        elif r < 0.6:
            short = f"{symptom} in {alias}"
        elif r < 0.8:
            short = f"{alias} - {symptom}"
        elif r < 0.9:
            short = symptom
        else:
            short = f"{symptom} ({alias})"
    r = rnd.random()
    if r < 0.08:
        short = rnd.choice(PREFIXES) + short
    elif r < 0.18:
        short = short + rnd.choice(SUFFIXES)

    if vague:
        sentences = [rnd.choice(VAGUE_DESC)]
    elif use_cause:
        sentences = [_fill(rnd, rnd.choice(cause.detail), system, location)]
    else:
        sentences = [f"{symptom[0].upper()}{symptom[1:]}."]
    mentions_other = rnd.random() < 0.1
    used: set[str] = set()
    for _ in range(rnd.choice((0, 1, 1, 2, 2, 3)) - mentions_other):  # 1-4 sentences in all
        template = rnd.choice(cause.detail if use_cause and rnd.random() < 0.5 else DETAILS)
        if template not in used:
            used.add(template)
            sentences.append(_fill(rnd, template, system, location))
    if mentions_other:
        other = OTHER_SYSTEM[rnd.randrange(len(OTHER_SYSTEM))].format(other=rnd.choice(other_aliases))
        sentences.insert(rnd.randrange(len(sentences) + 1), other)
    if wait_hint:
        sentences.append(rnd.choice(WAIT_HINTS))
    description = " ".join(dict.fromkeys(sentences))  # no repeated sentence
    return _typos(rnd, short), _typos(rnd, description)
