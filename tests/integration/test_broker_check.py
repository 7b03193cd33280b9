"""The broker check against a real PLAINTEXT broker: a protocol mismatch is one clear line."""

from __future__ import annotations

from typing import Any

import pytest

from stream_rca.cli import main
from stream_rca.config import Settings
from stream_rca.errors import BrokerUnavailableError
from stream_rca.streaming.connect import check_broker

pytestmark = pytest.mark.integration


def test_a_running_broker_answers(kafka_bootstrap: str) -> None:
    assert check_broker(Settings(kafka_bootstrap=kafka_bootstrap)) >= 1


@pytest.mark.parametrize(
    "options",
    [
        {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "p"},
        {"security_protocol": "SSL"},
    ],
)
def test_another_protocol_against_a_plaintext_listener_says_so(
    kafka_bootstrap: str, options: dict[str, Any]
) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, **options)
    with pytest.raises(BrokerUnavailableError) as exc:
        check_broker(settings, timeout_s=2.0)
    text = str(exc.value)
    assert "\n" not in text
    assert f"Kafka at {kafka_bootstrap} ({options['security_protocol']})" in text
    assert f"that listener speaks PLAINTEXT, not {options['security_protocol']}" in text


def test_simulate_with_a_mismatched_protocol_is_one_line(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "simulate",
        "--bootstrap", kafka_bootstrap,
        "--security-protocol", "SASL_PLAINTEXT",
        "--sasl-username", "svc",
        "--sasl-password", "not-shown-anywhere",
        "--count", "1",
    ]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert "speaks PLAINTEXT, not SASL_PLAINTEXT" in line
    assert "not-shown-anywhere" not in err
