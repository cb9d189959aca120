"""Hypothesis strategies for what an operator may type: any text at all (lone surrogates included,
as a shell hands over bytes that are not UTF-8), and lists joined by commas."""

from __future__ import annotations

from hypothesis import strategies as st

# Every code point, surrogates and controls included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
# What a model id looks like, give or take a character.
MODEL_ISH = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:/@ -]{0,30}\Z")


def comma_list(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(items, min_size=1, max_size=4).map(",".join)
