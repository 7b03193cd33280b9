"""One settings object, built at the entry point from flags and ``STREAM_RCA_*`` variables, and
passed down. Core classes never read it: they take plain parameters.

:class:`Settings` is a table: each field carries its help text, flag, environment variable
(``STREAM_RCA_<FIELD>``), the commands that take it and what values it accepts, in the field's
metadata (:func:`setting`). The command line generates its flags from that table
(:mod:`stream_rca.cli_settings`), and every value, from a flag, a variable or a constructor
call, is checked by the same rule, so a bad one is one line that names where it came from and
what was expected. A new setting is one more field; nothing else needs to change.

The graphs file (the graphs a worker serves) is read by :func:`load_graphs`
(:mod:`stream_rca.graphs_file`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from stream_rca.errors import ConfigError
from stream_rca.graphs_file import GraphSpec, load_graphs

__all__ = [
    "ENV_PREFIX",
    "GraphSpec",
    "SettingInfo",
    "Settings",
    "env_name",
    "load_graphs",
    "setting",
    "setting_info",
]

ENV_PREFIX = "STREAM_RCA_"

WORKER = ("worker",)
KAFKA = ("worker", "simulate")
CONNECTION = ("worker", "simulate", "replay", "ingest")
"""Security settings and the input topic: replay takes them for ``--to-kafka``."""
INGEST = ("ingest",)

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class SettingInfo:
    """What the table says about one :class:`Settings` field (its metadata).

    Attributes
    ----------
    help
        One phrase for ``--help``.
    flags
        The flag and its aliases (default ``--<field-with-dashes>``).
    metavar
        Placeholder of the value in ``--help``.
    commands
        The subcommands that take the setting.
    secret
        Masked in ``repr`` and :meth:`Settings.redacted`.
    choices
        The accepted values (compared case-insensitively), if they are few.
    check
        A rule on the converted value, and ``expected``, what it accepts in words.
    """

    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    commands: tuple[str, ...] = WORKER
    secret: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    expected: str | None = None


def setting(
    default: Any,
    help: str,  # noqa: A002 - the word argparse uses
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    commands: tuple[str, ...] = WORKER,
    secret: bool = False,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], bool] | None = None,
    expected: str | None = None,
) -> Any:
    """A :class:`Settings` field with its entry of the table (see :class:`SettingInfo`)."""
    info = SettingInfo(help, flags, metavar, commands, secret, choices, check, expected)
    return dataclasses.field(default=default, metadata={"setting": info})


def _port(x: int) -> bool:
    return 0 <= x <= 65535


def _positive(x: float) -> bool:
    return x > 0


def _at_least(low: int) -> Callable[[Any], bool]:
    return lambda n: n >= low


# Constructors of the entry shapes that recur in the table (topic, file, secret, port, seconds,
# count): a setting of one of them is one call, not the same keywords again. ``help`` is the word
# argparse uses (hence the A002 exemptions).


def _topic(default: str, help: str, commands: tuple[str, ...] = WORKER) -> Any:  # noqa: A002
    """A topic name."""
    return setting(default, help, metavar="TOPIC", commands=commands)


def _file(help: str, commands: tuple[str, ...]) -> Any:  # noqa: A002
    """A path, default none."""
    return setting(None, help, metavar="FILE", commands=commands)


def _secret(help: str, metavar: str, commands: tuple[str, ...] = WORKER) -> Any:  # noqa: A002
    """A secret text, default none, masked in ``repr`` and logs."""
    return setting(None, help, metavar=metavar, commands=commands, secret=True)


def _port_number(
    default: int | None,
    help: str,  # noqa: A002
    commands: tuple[str, ...] = WORKER,
) -> Any:
    """A TCP port from 0 to 65535."""
    expected = "an integer from 0 to 65535"
    return setting(default, help, metavar="PORT", commands=commands, check=_port, expected=expected)


def _seconds(default: float, help: str, commands: tuple[str, ...] = WORKER) -> Any:  # noqa: A002
    """A duration in seconds, > 0."""
    expected = "a number of seconds > 0"
    return setting(
        default, help, metavar="SECONDS", commands=commands, check=_positive, expected=expected
    )


def _count(
    default: int,
    help: str,  # noqa: A002
    *,
    least: int,
    metavar: str = "N",
    commands: tuple[str, ...] = WORKER,
) -> Any:
    """An integer >= ``least``."""
    check, expected = _at_least(least), f"an integer >= {least}"
    return setting(
        default, help, metavar=metavar, commands=commands, check=check, expected=expected
    )


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Settings of the command line and the streaming worker.

    Every field can be set by an environment variable ``STREAM_RCA_<FIELD>`` (upper case) and
    by its command-line flag, which wins. Values are checked when the object is built
    (:class:`~stream_rca.errors.ConfigError` names the field and what it accepts). The SASL
    password is masked in ``repr`` and :meth:`redacted`; it can come from a file
    (``sasl_password_file``), which keeps it out of ``ps`` and the environment.

    Examples
    --------
    >>> s = Settings.from_env({"STREAM_RCA_PARTITIONS": "8"}, app_id="shop")
    >>> s.partitions, s.app_id
    (8, 'shop')
    >>> s = Settings(sasl_username="u", sasl_password="hunter2", security_protocol="SASL_SSL")
    >>> "hunter2" in repr(s), "sasl_password='***'" in repr(s)
    (False, True)
    >>> Settings.from_env({"STREAM_RCA_WEB_PORT": "abc"}, names=["web_port"])
    Traceback (most recent call last):
    ...
    stream_rca.errors.ConfigError: STREAM_RCA_WEB_PORT='abc': expected an integer from 0 to 65535
    """

    kafka_bootstrap: str = setting(
        "127.0.0.1:9092",
        "Kafka bootstrap servers, comma-separated",
        flags=("--bootstrap",),
        metavar="HOST:PORT",
        commands=(*KAFKA, *INGEST),
    )
    config: str | None = _file("graphs file (YAML or JSON) to serve", (*WORKER, *INGEST))
    input_topic: str = setting(
        "metrics",
        "topic of the metric events",
        flags=("--input-topic", "--topic"),
        metavar="TOPIC",
        commands=CONNECTION,
    )
    attributions_topic: str = _topic("rca.attributions", "topic of the attributions", KAFKA)
    scores_topic: str = _topic("rca.scores", "topic of the per-snapshot node scores", KAFKA)
    deadletter_topic: str = _topic("rca.deadletter", "topic of rejected events", KAFKA)
    changes_topic: str = _topic("rca.changes", "topic of the distribution-change answers")
    change_requests_topic: str = _topic(
        "rca.change-requests", "topic of requests for a distribution-change answer"
    )
    spans_topic: str = _topic(
        "rca.spans",
        "topic of OpenTelemetry spans (OTLP JSON or Jaeger JSON documents, keyed by graph "
        "name) that grow the graphs with grow_from_spans: true",
    )
    change_after: int = _count(
        30,
        "snapshots an incident stays open before the worker publishes why the distribution "
        "changed (0: never)",
        least=0,
    )
    partitions: int = _count(
        4, "partitions of the input topic and the state table", least=1, commands=KAFKA
    )
    publish_scores: bool = setting(False, "publish node scores of every snapshot")
    report_dir: str | None = setting(
        None,
        "write an HTML page per incident into this directory (default: off); serve it and "
        "set Prometheus' external label stream_rca_report_url to its URL for the alert's link",
        metavar="DIR",
    )
    app_id: str = setting("stream-rca", "consumer group and state-table prefix", metavar="ID")
    checkpoint_interval: float = _seconds(30.0, "seconds between checkpoints of the engine state")
    lag_interval: float = _seconds(5.0, "seconds between reports of the consumer lag gauge")
    quarantine_after: int = _count(
        5, "processing errors of a graph in a row after which it is quarantined", least=1
    )
    session_timeout: float = _seconds(
        30.0, "seconds before the group gives a silent worker's partitions to the others"
    )
    worker_id: str | None = setting(
        None, "name of this worker's data directory (default: <hostname>-<pid>)", metavar="ID"
    )
    data_dir: str = setting(
        ".stream-rca", "local data directory (a subdirectory per worker)", metavar="DIR"
    )
    loglevel: str = setting(
        "info", "log level", metavar="LEVEL", choices=LOG_LEVELS, commands=(*WORKER, *INGEST)
    )
    metrics_port: int | None = _port_number(
        None, "serve Prometheus /metrics on this port (default: off)", ("worker", "demo")
    )
    metrics_addr: str = setting(
        "127.0.0.1",
        "address of /metrics and the faust web server",
        metavar="ADDR",
        commands=("worker", "demo"),
    )
    web_port: int = _port_number(
        0, "faust web server port, on 127.0.0.1 and without table views (default 0: off)"
    )
    checkpoint_key: str | None = _secret(
        "secret key (16+ characters) that signs and verifies the checkpoints (HMAC-SHA256), "
        "the same on every worker; a flag is visible in `ps`: prefer the variable",
        "KEY",
    )
    insecure_no_checkpoint_key: bool = setting(
        False, "run without a checkpoint key: checkpoints are then not authenticated"
    )
    security_protocol: str = setting(
        "PLAINTEXT",
        "security protocol of the broker's listener",
        metavar="PROTO",
        commands=CONNECTION,
        choices=SECURITY_PROTOCOLS,
    )
    sasl_mechanism: str | None = setting(
        None,
        "SASL mechanism (default PLAIN with a SASL protocol)",
        metavar="MECH",
        commands=CONNECTION,
        choices=SASL_MECHANISMS,
    )
    sasl_username: str | None = setting(None, "SASL user name", metavar="USER", commands=CONNECTION)
    sasl_password: str | None = _secret(
        "SASL password; a flag is visible to every user of the host in `ps`: prefer "
        "--sasl-password-file or the variable",
        "PASSWORD",
        CONNECTION,
    )
    sasl_password_file: str | None = _file(
        "file holding the SASL password (one line; a trailing newline is ignored)", CONNECTION
    )
    ssl_cafile: str | None = _file("CA certificates (PEM)", CONNECTION)
    ssl_certfile: str | None = _file("client certificate (PEM)", CONNECTION)
    ssl_keyfile: str | None = _file("client key (PEM)", CONNECTION)

    ingest_addr: str = setting(
        "127.0.0.1", "address the ingest receiver listens on", metavar="ADDR", commands=INGEST
    )
    ingest_port: int = _port_number(9201, "port of the ingest receiver (0: any free port)", INGEST)
    ingest_token: str | None = _secret(
        "bearer token the ingest endpoints want (default: none); a flag is visible in `ps`: "
        "prefer the variable",
        "TOKEN",
        INGEST,
    )
    ingest_tls_cert: str | None = _file("serve HTTPS with this certificate chain (PEM)", INGEST)
    ingest_tls_key: str | None = _file("private key of --ingest-tls-cert (PEM)", INGEST)
    ingest_max_body: int = _count(
        4 * 1024 * 1024,
        "largest request body in bytes (413 beyond; it may decompress to 16 times that)",
        least=1024,
        metavar="BYTES",
        commands=INGEST,
    )
    ingest_pending_bytes: int = _count(
        16 * 1024 * 1024,
        "bytes of events sent and not yet acknowledged by Kafka before requests are refused "
        "with 503/429 and Retry-After",
        least=1024,
        metavar="BYTES",
        commands=INGEST,
    )
    ingest_ack_timeout: float = _seconds(
        10.0, "seconds to wait for Kafka's acknowledgement of a request's events (then 503)", INGEST
    )
    ingest_retry_after: int = _count(
        2,
        "seconds the Retry-After header of a 429/503 answer says",
        least=0,
        metavar="SECONDS",
        commands=INGEST,
    )
    ingest_embedded: bool = setting(
        False,
        "run the engine in this process instead of writing to Kafka (attributions as JSON lines)",
        flags=("--embedded",),
        commands=INGEST,
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _checked(f.name, getattr(self, f.name), f"setting {f.name}")
            object.__setattr__(self, f.name, value)
        if (self.ingest_tls_cert is None) != (self.ingest_tls_key is None):
            raise ConfigError(
                f"{env_name('ingest_tls_cert')} and {env_name('ingest_tls_key')} go together: "
                "give both for HTTPS, or neither"
            )
        if self.sasl_password_file and self.sasl_password is None:
            object.__setattr__(self, "sasl_password", _read_secret(self.sasl_password_file))
        if self.security_protocol.startswith("SASL"):
            mechanism = self.sasl_mechanism or "PLAIN"
            object.__setattr__(self, "sasl_mechanism", mechanism)
            if mechanism in {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} and (
                not self.sasl_username or self.sasl_password is None
            ):
                raise ConfigError(
                    f"security protocol {self.security_protocol} with SASL {mechanism} needs a "
                    f"user name ({env_name('sasl_username')}) and a password "
                    f"({env_name('sasl_password_file')} or {env_name('sasl_password')})"
                )

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.redacted().items())
        return f"Settings({shown})"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        names: Collection[str] | None = None,
        flags: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Settings from ``STREAM_RCA_*`` variables, then flags and ``overrides``.

        Parameters
        ----------
        environ
            The variables (default: ``os.environ``).
        names
            Read the variables of these fields only (default: every field), so that a command
            is not stopped by a bad value of a setting it does not use.
        flags
            Field to the text given on the command line (``None``: not given); converted and
            checked like a variable, an error names the flag.
        overrides
            Field to a value (``None`` skipped), already typed.

        Raises
        ------
        ConfigError
            One line naming the variable or flag and what it accepts; for an unknown field,
            or a password given both directly and by file.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        wanted = known if names is None else set(names)
        if wanted - known:
            raise ConfigError(f"unknown settings: {', '.join(sorted(wanted - known))}")
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in sorted(wanted):
            raw = env.get(env_name(name))
            if raw is not None and raw.strip() != "":
                values[name] = _parse(name, raw, f"{env_name(name)}={raw!r}")
                sources[name] = env_name(name)
        for name, raw in (flags or {}).items():
            if raw is not None:
                flag = setting_info(name).flags[0] if name in known else name
                values[name] = _parse(name, raw, f"{flag} {raw!r}") if isinstance(raw, str) else raw
                sources[name] = flag
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        both = values.get("sasl_password") is not None and values.get("sasl_password_file")
        if both and values["sasl_password"] != _read_secret(values["sasl_password_file"]):
            raise ConfigError(
                "the SASL password is given twice, differently "
                f"({sources.get('sasl_password', 'directly')} and "
                f"{sources.get('sasl_password_file', 'a file')}): give one"
            )
        return cls(**values)

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options in the form kafka-python's clients take them."""
        opts: dict[str, Any] = {"security_protocol": self.security_protocol}
        for name in ("sasl_mechanism", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value:
                opts[name] = value
        if self.sasl_username:
            opts["sasl_plain_username"] = self.sasl_username
            opts["sasl_plain_password"] = self.sasl_password or ""
        return opts

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for logs."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in doc.items():
            if value is not None and setting_info(name).secret:
                doc[name] = "***"
        return doc


def setting_info(name: str) -> SettingInfo:
    """The table's entry of one :class:`Settings` field."""
    f = Settings.__dataclass_fields__[name]
    info = f.metadata.get("setting")
    if not isinstance(info, SettingInfo):
        raise ConfigError(f"Settings.{name} has no entry in the settings table")
    if not info.flags:
        info = dataclasses.replace(info, flags=("--" + name.replace("_", "-"),))
    return info


def env_name(name: str) -> str:
    """The environment variable of a :class:`Settings` field: ``STREAM_RCA_<FIELD>``."""
    return ENV_PREFIX + name.upper()


def field_type(name: str) -> type:
    """The type of a field's values, without ``| None``: ``str``, ``int``, ``float`` or ``bool``."""
    hint = _hints()[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    kind = args[0] if args else hint
    if kind not in (str, int, float, bool):
        raise ConfigError(f"Settings.{name}: unsupported type {hint}")
    return typing.cast(type, kind)


def expected_text(name: str) -> str:
    """What a field accepts, in words (used by error messages and ``--help``)."""
    info = setting_info(name)
    if info.expected:
        return info.expected
    if info.choices:
        return "one of " + ", ".join(info.choices)
    return {
        bool: "true or false (also 1/0, yes/no, on/off)",
        int: "an integer",
        float: "a number",
        str: "text",
    }[field_type(name)]


_HINTS: dict[str, Any] = {}


def _hints() -> dict[str, Any]:
    if not _HINTS:
        _HINTS.update(typing.get_type_hints(Settings))
    return _HINTS


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, raw: str, where: str) -> Any:
    """Convert the text of a variable or flag; ``where`` names it in the error."""
    kind = field_type(name)
    text = raw.strip()
    value: Any = text
    try:
        if kind is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise ValueError(text)
            value = text.lower() in _TRUE
        elif kind is int:
            value = int(text)
        elif kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
    except ValueError:
        raise ConfigError(f"{where}: expected {expected_text(name)}") from None
    return _checked(name, value, where)


def _checked(name: str, value: Any, where: str) -> Any:
    """``value`` checked against the field's type, choices and rule (canonical choice case)."""
    if value is None:
        if Settings.__dataclass_fields__[name].default is None:
            return None
        raise ConfigError(f"{where}: expected {expected_text(name)}, got None")
    kind = field_type(name)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    info = setting_info(name)
    if ok and info.choices:
        canonical = {c.lower(): c for c in info.choices}
        ok = str(value).lower() in canonical
        value = canonical.get(str(value).lower(), value)
    if ok and info.check is not None:
        ok = bool(info.check(value))
    if not ok:
        shown = f"{where}={value!r}" if where.startswith("setting ") else where
        raise ConfigError(f"{shown}: expected {expected_text(name)}")
    return value


def _read_secret(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the SASL password file {path}: {reason}") from None
    return text.rstrip("\r\n")
