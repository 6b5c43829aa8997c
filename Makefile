# Quick start:  make serve   (install + run on embedded defaults)
#               make test    (install test tools + run the whole suite)
#               make install-zh  (optional Mandarin speech pack: Whisper base multilingual, opencc)
.PHONY: install install-dev install-zh serve test lint bench clean

install:
	@scripts/install.sh

install-dev:
	@scripts/install.sh --dev

install-zh:
	@scripts/install.sh --zh

serve: install
	.venv/bin/cozy serve $(ARGS)

test: install-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/pytest -q $(ARGS)

lint: install-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: install-dev
	.venv/bin/python benchmarks/chat_overhead.py $(ARGS)

clean:
	rm -rf .venv .pytest_cache .ruff_cache
