"""Command-line flags generated from the :class:`~stream_rca.config.Settings` table.

:func:`add_settings` gives a subcommand one flag per setting it takes (the table's
``commands``), each shown in ``--help`` with its ``STREAM_RCA_*`` variable and default. Flags
are kept as text until the command runs: :func:`settings_from_args` then reads the variables of
those settings only and converts flags and variables by the same rule, so a bad value is one
line naming the flag or the variable, and a bad variable of one command never stops another
(``stream-rca --version`` works whatever the environment holds).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from stream_rca.config import Settings, env_name, expected_text, field_type, setting_info
from stream_rca.errors import StreamRCAError

__all__ = [
    "add_settings",
    "redact_logs",
    "report",
    "settings_fields",
    "settings_from_args",
    "settings_markdown",
]


def settings_fields(command: str) -> tuple[str, ...]:
    """The :class:`Settings` fields that ``command`` takes, in table order."""
    return tuple(f.name for f in fields(Settings) if command in setting_info(f.name).commands)


def _help(name: str) -> str:
    info = setting_info(name)
    default = Settings.__dataclass_fields__[name].default
    parts = [f"env {env_name(name)}"]
    if default is not None and not info.secret:
        shown = str(default).lower() if isinstance(default, bool) else default
        parts.append(f"default: {shown}")
    if info.choices:
        parts.append(expected_text(name))
    text = f"{info.help} ({'; '.join(parts)})"
    return text.replace("%", "%%")


def add_settings(
    parser: argparse.ArgumentParser, command: str, *, skip: Sequence[str] = ()
) -> tuple[str, ...]:
    """Add a flag for each setting ``command`` takes (but ``skip``); return their fields.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="demo")
    >>> add_settings(parser, "demo")
    ('metrics_port', 'metrics_addr')
    >>> parser.parse_args(["--metrics-port", "abc"]).metrics_port  # checked when it runs
    'abc'
    """
    names = tuple(n for n in settings_fields(command) if n not in skip)
    group = parser.add_argument_group(
        "settings", "each flag also reads its STREAM_RCA_* variable; a flag given wins"
    )
    for name in names:
        info = setting_info(name)
        if field_type(name) is bool:
            group.add_argument(
                *info.flags, dest=name, action=argparse.BooleanOptionalAction, help=_help(name)
            )
        else:
            metavar = info.metavar or (info.choices[0] if info.choices else name.upper())
            group.add_argument(*info.flags, dest=name, metavar=metavar, help=_help(name))
    return names


def settings_from_args(
    args: argparse.Namespace,
    command: str,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """The settings of ``command``: its variables, then its flags, then ``overrides``.

    Raises
    ------
    ConfigError
        One line naming the flag or variable whose value is wrong and what it accepts.
    """
    names = settings_fields(command)
    given = {n: getattr(args, n, None) for n in names}
    return Settings.from_env(environ, names=names, flags=given, **overrides)


def report(
    prog: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace
) -> int:
    """Run ``handler(args)``; a :class:`StreamRCAError` is one line on stderr and an exit code."""
    try:
        return handler(args)
    except StreamRCAError as exc:
        message = " ".join(str(exc).split())
        print(f"{prog}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def settings_markdown() -> str:
    """The settings table in Markdown: ``python -m stream_rca.cli_settings > docs/settings.md``."""
    rows = [
        "| flag | variable | commands | default | accepts | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in fields(Settings):
        info = setting_info(f.name)
        default = f.default
        shown = (
            "(none)"
            if default is None
            else str(default).lower()
            if isinstance(default, bool)
            else default
        )
        flags = ", ".join(f"`{flag}`" for flag in info.flags)
        if field_type(f.name) is bool:
            flags += f", `--no-{info.flags[0][2:]}`"
        cells = [
            flags,
            f"`{env_name(f.name)}`",
            ", ".join(info.commands),
            f"`{shown}`" if default not in (None, "") else "(none)",
            expected_text(f.name),
            info.help.replace("|", "\\|"),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    head = (
        "# Settings\n\n"
        "Generated from the `Settings` table in `stream_rca/config.py` by\n"
        "`python -m stream_rca.cli_settings > docs/settings.md`; do not edit by hand.\n\n"
        "Each setting has a flag and an environment variable; a flag given wins over the\n"
        "variable. A command reads only the variables of the settings it takes, so a bad value\n"
        "of one never stops another (`stream-rca --version` works whatever the environment\n"
        "holds). A bad value is one line naming the flag or variable and what it accepts, exit\n"
        "status 2.\n\n"
        "Secrets: the SASL password and the checkpoint key are masked in `repr(Settings)` and in\n"
        "every log record. A password given as `--sasl-password` is visible to every user of\n"
        "the host in `ps` (and in shell history): give it in a file, `--sasl-password-file` /\n"
        "`STREAM_RCA_SASL_PASSWORD_FILE` (one line, trailing newline ignored), or the variable.\n\n"
        "Before `worker`, `simulate` and `replay --to-kafka` start their Kafka clients, a\n"
        "check of a few seconds asks the bootstrap servers for metadata: a broker that is down,\n"
        "or a listener that speaks another security protocol, is one line naming the address\n"
        "and the protocol (exit status 1).\n\n"
    )
    return head + "\n".join(rows) + "\n"


class _Redacting(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


_installed: list[_Redacting] = []


def redact_logs(settings: Settings) -> None:
    """Mask the secrets of ``settings`` in every log record, whoever logs it.

    kafka-python logs its whole configuration (the SASL password too) at debug level; this
    wraps the log record factory so that the secret never reaches a handler.
    """
    secrets = [
        str(getattr(settings, f.name))
        for f in fields(Settings)
        if setting_info(f.name).secret and getattr(settings, f.name)
    ]
    if not secrets or any(set(r.secrets) >= set(secrets) for r in _installed):
        return
    redactor = _Redacting(secrets)
    _installed.append(redactor)
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    logging.setLogRecordFactory(factory)


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
