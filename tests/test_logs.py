"""Credential redaction in every position, JSON log lines, request ids on records."""

from __future__ import annotations

import io
import json
import logging

import pytest

from chargetracker.logs import configure_logging, redact

SECRET = "s3cr3t-T0ken-value"


@pytest.mark.parametrize("text", [
    f"GET /api/v1/cells?api_key={SECRET} HTTP/1.1",
    f"GET /api/v1/cells?limit=5&API-KEY={SECRET}&x=1",
    f"POST /x?token={SECRET}#frag",
    f"GET /x?a=1;password={SECRET}",
    f"Authorization: Bearer {SECRET}",
    f"headers={{'authorization': 'Basic {SECRET}'}}",
    f"sent Bearer {SECRET} to the server",
    f"store postgresql://ct:{SECRET}@db.example:5432/ct",
    f"remote https://{SECRET}@git.example/repo.git",
    f"dsn host=db user=ct password={SECRET} dbname=ct",
    f'{{"api_key": "{SECRET}", "cell": "a"}}',
    f"kafka sasl.password={SECRET}",
])
def test_credentials_are_redacted_in_any_position(text: str) -> None:
    out = redact(text)
    assert SECRET not in out and "***" in out


def test_harmless_text_is_left_alone() -> None:
    text = "GET /api/v1/cells/a1/cycles?limit=5&offset=10 HTTP/1.1 200; postgresql://db/ct"
    assert redact(text) == text
    assert redact("postgresql://ct:***@db/ct") == "postgresql://ct:***@db/ct"
    assert redact(f"postgresql://ct:{SECRET}@db/ct") == "postgresql://ct:***@db/ct"


def test_json_lines_redact_message_arguments_and_carry_the_level() -> None:
    buf = io.StringIO()
    handler = configure_logging("debug", "json", stream=buf)
    try:
        log = logging.getLogger("chargetracker.test")
        log.info("opened %s for %s", f"postgresql://u:{SECRET}@h/db", "x")
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5",
                                                 "GET", f"/metrics?api_key={SECRET}", "1.1", 200)
        try:
            raise RuntimeError(f"failed with Bearer {SECRET}")
        except RuntimeError:
            log.exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    text = buf.getvalue()
    assert SECRET not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "chargetracker.test"
    assert lines[0]["message"] == "opened postgresql://u:***@h/db for x"
    assert lines[1]["path"] == "/metrics?api_key=***" and lines[1]["status"] == 200
    assert "RuntimeError" in lines[2]["exception"]


def test_text_lines_and_level_filtering() -> None:
    buf = io.StringIO()
    handler = configure_logging("warning", "text", stream=buf)
    try:
        logging.getLogger("chargetracker.t").info("hidden")
        logging.getLogger("chargetracker.t").warning("shown token=%s", SECRET)
    finally:
        logging.getLogger().removeHandler(handler)
    assert "hidden" not in buf.getvalue()
    assert "WARNING chargetracker.t: shown token=***" in buf.getvalue()
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud")
