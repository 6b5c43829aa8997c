"""Sentence chunker: first boundary starts synthesis, long sentences split, streaming == whole."""

from __future__ import annotations

from cozy_media.tts.chunker import SentenceChunker


def stream(text: str, piece: int, **kw: int) -> list[str]:
    c = SentenceChunker(**kw)
    out: list[str] = []
    for i in range(0, len(text), piece):
        out += c.push(text[i : i + piece])
    return out + c.flush()


def test_sentences_abbreviations_numbers() -> None:
    text = "Sure. I can help with that! Dr. Smith said e.g. this is fine. The U.S. grew 3.5% in 2024. Next?"
    assert SentenceChunker().split(text) == [
        "Sure.",
        "I can help with that!",
        "Dr. Smith said e.g. this is fine.",
        "The U.S. grew 3.5% in 2024.",
        "Next?",
    ]


def test_first_chunk_leaves_at_first_boundary_while_streaming() -> None:
    c = SentenceChunker()
    assert c.push("Sure") == []
    assert c.push(". Let") == ["Sure."]  # the next word decides the boundary
    assert c.push(" me check") == []
    assert c.flush() == ["Let me check"]


def test_streaming_token_by_token_equals_whole_text() -> None:
    text = (
        "Hello there! The weather is sunny, warm and bright today; enjoy it.\nAnything else? "
        "This is a much longer sentence that keeps going with many words and clauses, so that it has to be "
        "split somewhere sensible because it is far longer than the limit of any chunk in this test, surely."
    )
    whole = SentenceChunker().split(text)
    for piece in (1, 3, 17):
        assert stream(text, piece) == whole
    assert all(len(c) <= 250 for c in whole)


def test_long_sentences_split_at_clauses_first_chunk_short() -> None:
    text = "This is a very long opening sentence that goes on and on, with many clauses and words, never ending at all."
    chunks = SentenceChunker(first_max_chars=60).split(text)
    assert chunks[0] == "This is a very long opening sentence that goes on and on,"
    assert len(chunks) == 2
    assert SentenceChunker(max_chars=20, first_max_chars=20).split("x" * 50) == ["x" * 20, "x" * 20, "x" * 10]


def test_newlines_cjk_and_empty() -> None:
    assert SentenceChunker().split("- milk\n- eggs\n\n- bread") == ["- milk", "- eggs", "- bread"]
    assert SentenceChunker().split("你好。今天天气很好！") == ["你好。", "今天天气很好！"]
    assert SentenceChunker().split("... !!") == []
    assert SentenceChunker().split("") == []
