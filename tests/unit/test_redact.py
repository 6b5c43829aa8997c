"""Config redaction by key and by value (cozy_actors/config/redact.py): what leaves in clear and what not."""

from __future__ import annotations

from pydantic import SecretStr

from cozy_actors.config.redact import MASK, looks_like_token, redact, redact_args, redact_text


def test_keys_and_secretstr() -> None:
    data = {"api_key": "abc", "password": "p", "headers": {"Authorization": SecretStr("Bearer x")}, "name": "n"}
    assert redact(data) == {"api_key": MASK, "password": MASK, "headers": {"Authorization": MASK}, "name": "n"}
    assert redact({"token": ""}) == {"token": ""} and redact(SecretStr("")) is None


def test_ice_server_credential_and_its_username() -> None:
    ice = [
        {"urls": "turn:turn.example.com:3478", "username": "1700000000:alice", "credential": "c"},
        {"urls": "stun:s"},
    ]
    assert redact({"ice_servers": ice}) == {
        "ice_servers": [
            {"urls": "turn:turn.example.com:3478", "username": MASK, "credential": MASK},
            {"urls": "stun:s"},
        ]
    }


def test_urls() -> None:
    assert redact_text("postgres://svc:hunter2@db.internal:5432/app") == f"postgres://svc:{MASK}@db.internal:5432/app"
    assert redact_text("https://ghp_abcdef@github.com/x.git") == f"https://{MASK}@github.com/x.git"
    assert redact_text("https://h/v1?token=abc&mode=fast") == f"https://h/v1?token={MASK}&mode=fast"
    assert (
        redact_text("https://h/x?api_key=1&key=2&Signature=3")
        == f"https://h/x?api_key={MASK}&key={MASK}&Signature={MASK}"
    )
    for plain in (
        "http://127.0.0.1:8765/mcp",
        "https://example.com/a@b",
        "turn:turn.example.com:3478",
        "personalities",
    ):
        assert redact_text(plain) == plain


def test_command_lines() -> None:
    args = ["-m", "server", "--token", "t0k", "--api-key=k3y", "GITHUB_TOKEN=ghp_x", "--port", "8080", "-v"]
    expected = ["-m", "server", "--token", MASK, f"--api-key={MASK}", f"GITHUB_TOKEN={MASK}", "--port", "8080", "-v"]
    assert redact_args(args) == expected
    assert redact_args(["sk-proj-abc123", "--db", "postgres://u:p@h/d"]) == [MASK, "--db", f"postgres://u:{MASK}@h/d"]


def test_env_values() -> None:
    env = {"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "s.x", "OPAQUE": "Zx81kQ2mN7pL4vT9wR3yB6cH", "N": "3"}
    assert redact({"env": env}) == {
        "env": {"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": MASK, "OPAQUE": MASK, "N": "3"}
    }


def test_token_heuristic_spares_ordinary_values() -> None:
    for value in ("cozy_actors.engines.tools.examples.notes_server", "gpt-4o-mini", "en_US-joe-medium", "smollm2-135m"):
        assert not looks_like_token(value), value
    for value in ("sk-abc", "xoxb-1-2", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", "a8F3kLm92QzXw7Rt5Yp1Vb6N"):
        assert looks_like_token(value), value
