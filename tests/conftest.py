"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import StubLLMServer, start_stub_llm


# --- stub LLM upstream (tests/support/stub_llm.py) -------------------------------------------
@pytest.fixture(scope="session")
def stub_llm() -> Iterator[StubLLMServer]:
    """A real-HTTP OpenAI-compatible stub upstream for the whole session.

    ``.base_url`` is ``http://127.0.0.1:<port>/v1``; ``.requests()`` lists the chat request bodies
    it received (last 200); ``.clear()`` forgets them. Replies are scripted by directives in the
    messages: see ``tests.support.stub_llm.DIRECTIVES``.
    """
    with start_stub_llm() as stub:
        yield stub
