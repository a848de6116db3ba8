"""The configuration schema: typed, validated, unknown keys refused.

Top-level sections are fixed here. Each device's keys depend on its `driver`
and are declared in that driver's catalog entry, at the end of its module in
`gateway/drivers/` or `gateway/protocols/`; the loader validates every device
against its driver's model. `DeviceBase`, `I2CDevice` and `SerialDevice` are the
bases those models share.
"""

from __future__ import annotations

import math
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from gateway.config.outputs import AnyOutput, OutputConfig
from gateway.config.schema import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from gateway.config.sim import validate_sim
from gateway.config.types import Duration, DurationOrZero, I2CAddress, Name, Size, parse_listen


class Section(BaseModel):
    """Base of every config object: strict keys, immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# ---------------------------------------------------------------- gateway


class ClockSection(Section):
    sync: Literal["auto", "kernel", "timesyncd", "off"] = Field(
        default="auto",
        description=(
            "How to tell the wall clock is synchronised (a Pi has no real-time clock): "
            "auto (the kernel or timesyncd says so; trusted when no time service runs), "
            "kernel (adjtimex), timesyncd (its flag file), off (always trusted)."
        ),
    )
    hold: DurationOrZero = Field(
        default=600.0,
        description=(
            "While the clock is not synchronised, hold readings back from the broker up to "
            "this long after boot, so they go out with corrected timestamps; after that they "
            "are published marked \"clock\": \"unsynced\". 0: never hold."
        ),
    )


class GatewaySection(Section):
    id: Name = Field(description="Gateway id, used in topics and the MQTT client id.")
    simulate: bool = Field(
        default=False, description="true: hardware_sim stands in for every device."
    )
    health_interval: Duration = Field(
        default=30.0, description="How often the retained health topic is refreshed."
    )
    stop_timeout: Duration = Field(
        default=10.0,
        description="The stop takes at most this long, whatever the broker or the disk does: "
        "queued readings are delivered meanwhile, the rest stays in the spool.",
    )
    clock: ClockSection = Field(
        default_factory=ClockSection,
        description="Timestamps before NTP has synchronised the clock (docs/deploy.md).",
    )


# ---------------------------------------------------------------- mqtt


class TlsSection(Section):
    ca_file: Path | None = Field(default=None, description="CA bundle to verify the broker.")
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")
    insecure: bool = Field(
        default=False,
        description="Skip hostname verification. Logged loudly; for testing only.",
    )
    min_version: Literal["1.2", "1.3"] = Field(default="1.2", description="TLS version floor.")

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, float | int) else v


def _protocol_text(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return {5: "5", 3.11: "3.1.1", 311: "3.1.1", 4: "3.1.1"}.get(v, str(v))
    return v


def _validate_topic_prefix(v: str) -> str:
    if not v or v.startswith("/") or v.endswith("/"):
        raise ValueError("must not be empty or start or end with '/'")
    if any(c in v for c in "+#\0"):
        raise ValueError("must not contain the MQTT wildcards '+' or '#'")
    if "//" in v:
        raise ValueError("must not contain an empty level ('//')")
    return v


#: Where the broker password belongs (said when one is written into the config).
PASSWORD_HOME = ("password_file: /etc/edge-gateway/mqtt-password (a file of mode 0600) or "
                 "password_env: NAME_OF_AN_ENVIRONMENT_VARIABLE")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MqttSection(Section):
    host: str = Field(default="localhost", min_length=1, description="Broker host name.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    qos: Literal[0, 1, 2] = Field(default=1, description="QoS of readings (1: at least once).")
    topic_prefix: str | None = Field(default=None, description="Default: gateway/<id>.")
    client_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="Default: edge-gateway-<id>."
    )
    username: str | None = Field(default=None, description="Username for the broker.")
    password_file: Path | None = Field(
        default=None, description="File holding the password; read at start, never logged."
    )
    password_env: str | None = Field(
        default=None, description="Environment variable holding the password (instead of a file)."
    )
    tls: TlsSection | None = Field(default=None, description="TLS settings; absent: plain TCP.")
    protocol: Annotated[Literal["5", "3.1.1"], BeforeValidator(_protocol_text)] = Field(
        default="5", description="MQTT protocol version: 5 or 3.1.1."
    )
    keepalive: Duration = Field(default=60.0, description="MQTT keepalive.")
    reconnect_min: Duration = Field(default=1.0, description="First reconnect delay.")
    reconnect_max: Duration = Field(
        default=10.0,
        description="Longest reconnect delay (jittered; the first retry after a lost "
        "connection is immediate).",
    )
    session_expiry: DurationOrZero = Field(
        default=3600.0, description="MQTT 5 session expiry, so QoS 1 survives short drops."
    )
    max_inflight: int = Field(
        default=200, ge=1, le=65535,
        description="Readings handed to the client before acks (capped by the broker's "
        "MQTT 5 Receive Maximum).",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        return None if v is None else _validate_topic_prefix(v)

    @field_validator("password_env")
    @classmethod
    def _password_env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_NAME.fullmatch(v):
            raise ValueError(
                "not the name of an environment variable (letters, digits and '_'); the "
                f"password itself does not go into the config: use {PASSWORD_HOME}")
        return v


# ---------------------------------------------------------------- buffer


class BufferSection(Section):
    path: Path = Field(
        default=Path("/var/lib/edge-gateway/spool.db"), description="SQLite spool file."
    )
    max_messages: int = Field(default=1_000_000, ge=1, description="Spool capacity in readings.")
    max_bytes: Size = Field(default=512 * 1024 * 1024, description="Spool capacity in bytes.")
    when_full: Literal["drop_oldest", "reject_new"] = Field(
        default="drop_oldest", description="What to do when the spool is full."
    )
    durability: Literal["disk", "memory"] = Field(
        default="disk", description="memory: no disk writes; readings die with the process."
    )
    sync: Literal["full", "normal"] = Field(
        default="full",
        description="full: survives power loss (the WAL is fsynced right after each commit, "
        "by a thread of its own, so readings are not held back by the disk); normal: "
        "survives crashes.",
    )
    journal: bool = Field(
        default=True,
        description=("With sync: full and no write_delay: each burst of readings is written "
                     "to a ring file beside the spool (<path>.journal) in one 4 KiB block and "
                     "fdatasynced, and reaches the spool file only if the broker has not "
                     "acknowledged it within 2 s: as durable as a commit, at about 40 % fewer "
                     "bytes written per reading (docs/small-pi.md). false: every burst is a "
                     "commit of the spool file."),
    )
    commit_interval: DurationOrZero = Field(
        default=0.0, le=10.0,
        description=("0: group commit (an idle spooler commits at once; under load, readings "
                     "arriving during a commit share the next). Above 0: readings arriving "
                     "within this window share a commit."),
    )
    commit_max_rows: int = Field(default=500, ge=1, description="Rows per commit at most.")
    write_delay: DurationOrZero = Field(
        default=0.0, le=60.0,
        description=("SD-card mode (docs/small-pi.md): readings acknowledged by the broker "
                     "within this time are never written to disk; the rest are spooled once it "
                     "has passed (all of them while the broker is away, and all at a stop). A "
                     "power cut or SIGKILL loses the readings of the last write_delay that the "
                     "broker had not acknowledged. 0: every reading is committed (and, with "
                     "sync: full, on disk) before the broker's acknowledgement can delete "
                     "it; it is sent while that commit runs."),
    )

    @model_validator(mode="after")
    def _write_delay_needs_disk(self) -> BufferSection:
        if self.write_delay > 0 and self.durability == "memory":
            raise ValueError("write_delay applies to durability: disk (with durability: memory "
                             "nothing is written anyway)")
        return self


# ---------------------------------------------------------------- devices


class PublishPolicy(Section):
    on_change: bool = Field(default=False, description="Publish only when a value changed.")
    deadband: float | str | None = Field(
        default=None, description="Change needed to publish: absolute (0.2) or relative (\"1%\")."
    )
    max_silence: Duration | None = Field(
        default=None, description="Publish at least this often even without change."
    )
    deadbands: dict[str, float | str] = Field(
        default_factory=dict,
        description=(
            "Per-quantity deadbands overriding `deadband`: {humidity_pct: 2, pressure_hpa: \"0.1%\"}."
        ),
    )

    @field_validator("deadbands")
    @classmethod
    def _deadbands(cls, v: dict[str, float | str]) -> dict[str, float | str]:
        for key, band in v.items():
            try:
                cls._deadband(band)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    @field_validator("deadband")
    @classmethod
    def _deadband(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str):
            text = v.strip()
            if not text.endswith("%"):
                raise ValueError('a relative deadband ends with "%", e.g. "1%"')
            try:
                pct = float(text[:-1])
            except ValueError:
                raise ValueError(f"not a percentage: {v!r}") from None
            if pct < 0:
                raise ValueError("must not be negative")
        elif v is not None and v < 0:
            raise ValueError("must not be negative")
        return v


class DeviceHomeAssistant(Section):
    """How Home Assistant shows one device (with `homeassistant.discovery: true`)."""

    precision: dict[str, Annotated[int, Field(ge=0, le=9)]] = Field(
        default_factory=dict,
        description="Decimals shown per published key: {temperature_c: 1}; default: from the "
        "quantity and the chip's resolution.",
    )
    manufacturer: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="Maker shown for the device (default: the chip's maker, where known).",
    )
    model: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="Model shown for the device (default: the chip, e.g. BME280).",
    )


class DeviceBase(Section):
    """Keys every device has."""

    name: Name = Field(description="Device name, used in its topic.")
    driver: str = Field(description="Which driver reads it.")
    interval: Duration = Field(default=5.0, description="Poll interval.")
    publish: PublishPolicy | None = Field(default=None, description="Report-on-change policy.")
    sim: dict[str, Any] | None = Field(
        default=None, description="Simulator settings (value profiles, faults) for simulate mode."
    )
    homeassistant: DeviceHomeAssistant | None = Field(
        default=None, description="Home Assistant discovery settings for this device."
    )


class I2CDevice(DeviceBase):
    """An I2C chip on /dev/i2c-<bus>.

    Its `sim:` block is checked at load time: a typo under `sim:` (an unknown fault,
    a quantity the chip does not measure, a bad profile) is a config error reported
    by `edge-gateway check`, not a crash when the simulator starts. The check itself
    is the simulator's, plugged in from above (`gateway.config.sim`).
    """

    bus: int = Field(default=1, ge=0, le=255, description="I2C bus number (/dev/i2c-N).")
    address: I2CAddress = Field(description="7-bit I2C address.")

    @field_validator("sim")
    @classmethod
    def _check_sim(cls, v: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        driver = info.data.get("driver")
        if v is not None and isinstance(driver, str):
            validate_sim(driver, 0x10, v)
        return v


_BAUDRATES = (
    50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
    57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
    2000000, 2500000, 3000000, 3500000, 4000000,
)


class SerialDevice(DeviceBase):
    """A device on a serial port (USB adapter, UART, RS-485)."""

    port: str = Field(min_length=1, description="Serial port, e.g. /dev/ttyUSB0 or a by-id path.")
    baudrate: int = Field(default=9600, description="Baud rate.")
    bytesize: Literal[5, 6, 7, 8] = Field(default=8, description="Data bits.")
    parity: Literal["none", "even", "odd", "mark", "space"] = Field(
        default="none", description="Parity."
    )
    stopbits: float = Field(default=1, description="Stop bits: 1, 1.5 or 2.")
    timeout: Duration = Field(default=1.0, le=60.0, description="Read timeout.")

    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError("must be 1, 1.5 or 2")
        return v

    @field_validator("baudrate")
    @classmethod
    def _baud(cls, v: int) -> int:
        if v not in _BAUDRATES:
            raise ValueError(f"{v} is not a standard baud rate (e.g. 9600, 19200, 115200)")
        return v


# ---------------------------------------------------------------- inference


class InferenceSection(Section):
    enabled: bool = Field(default=False, description="Run on-device image inference.")
    name: Name = Field(default="camera", description="Topic name of the results.")
    model: Path | None = Field(default=None, description="The .tflite model file.")
    labels: Path | None = Field(default=None, description="Labels file, one per line.")
    task: Literal["auto", "classification", "detection"] = Field(
        default="auto", description="auto: detection if the model has 4 outputs."
    )
    camera: str = Field(
        default="sim", description="sim | /dev/videoN | picamera2 | a video file or image folder."
    )
    fps: float = Field(default=2.0, gt=0, le=120, description="Target frames per second.")
    num_threads: int = Field(default=1, ge=1, le=16, description="Interpreter threads.")
    score_threshold: float = Field(default=0.5, ge=0, le=1, description="Drop weaker results.")
    top_k: int = Field(default=3, ge=1, le=100, description="Labels kept (classification).")
    roi: tuple[float, float, float, float] | None = Field(
        default=None, description="Region of interest [ymin, xmin, ymax, xmax], 0..1."
    )
    publish_interval: DurationOrZero = Field(
        default=60.0, description="Publish unchanged results at most this often (0: every frame)."
    )
    heartbeat_timeout: Duration = Field(
        default=30.0, description="A worker silent this long is replaced."
    )
    max_rss: Size = Field(default=400 * 1024 * 1024, description="Worker memory limit.")
    preset: Literal["mobilenet", "unit", "imagenet", "raw"] | None = Field(
        default=None, description="Input normalisation by name: mobilenet (p-127.5)/127.5, "
        "unit p/255, imagenet per-channel mean/std, raw p. Default: the model's metadata, "
        "else mobilenet for float input.",
    )
    mean: list[float] | None = Field(
        default=None, description="Input normalisation (p-mean)/std: 1 value or 1 per channel."
    )
    std: list[float] | None = Field(default=None, description="See mean; each > 0.")
    resize: Literal["bilinear", "area", "nearest"] = Field(
        default="bilinear", description="How frames are scaled to the model input."
    )

    @model_validator(mode="after")
    def _normalisation(self) -> InferenceSection:
        if (self.mean is None) != (self.std is None):
            raise ValueError("inference.mean and inference.std go together")
        if self.mean is not None and self.preset is not None:
            raise ValueError("give inference.preset or inference.mean/std, not both")
        return self

    @field_validator("mean", "std")
    @classmethod
    def _per_channel(cls, v: list[float] | None, info: ValidationInfo) -> list[float] | None:
        if v is None:
            return v
        if len(v) not in (1, 3):
            raise ValueError("1 value, or 3 (R, G, B)")
        if not all(math.isfinite(x) for x in v):
            raise ValueError("finite numbers only")
        if info.field_name == "std" and any(x <= 0 for x in v):
            raise ValueError("every value must be > 0")
        return v

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: tuple[float, float, float, float] | None) -> (
            tuple[float, float, float, float] | None):
        if v is None:
            return v
        ymin, xmin, ymax, xmax = v
        if not all(0.0 <= c <= 1.0 for c in v):
            raise ValueError("corners are fractions of the frame, 0..1")
        if ymin >= ymax or xmin >= xmax:
            raise ValueError("expected [ymin, xmin, ymax, xmax] with ymin < ymax and xmin < xmax")
        return v


# ---------------------------------------------------------------- ecosystem


class HomeAssistantSection(Section):
    discovery: bool = Field(default=False, description="Publish retained discovery configs.")
    prefix: str = Field(default="homeassistant", description="Discovery prefix.")
    device_name: str = Field(
        default="{gateway} {device}", min_length=1, max_length=100,
        description="Device name shown in Home Assistant; {gateway} is the gateway id, {device} "
        "the device name (keeps several gateways on one broker apart).",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _validate_topic_prefix(v)

    @field_validator("device_name")
    @classmethod
    def _device_name(cls, v: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid template: {exc}") from None
        unknown = fields - {"gateway", "device"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {', '.join(sorted(unknown))}; "
                             "use {gateway} and {device}")
        if "device" not in fields:
            raise ValueError("must contain {device}, or every device would have the same name")
        return v


class MetricsSection(Section):
    listen: str | None = Field(
        default=None, description="host:port of an optional Prometheus endpoint."
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: Any) -> Any:
        if v is None:
            return v
        host, sep, port = str(v).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port such as 127.0.0.1:9108, got {v!r}")
        return v


class HttpSection(Section):
    listen: str | None = Field(
        default=None,
        description="[host:]port of the status page, `/api/status` and `/metrics` (off when unset; "
                    "a port alone binds 127.0.0.1).",
    )
    username: str = Field(default="admin", description="Basic-auth user (with password_file).")
    password_file: Path | None = Field(
        default=None,
        description="Basic-auth password (first line). Without it a non-loopback listen "
                    "address is logged as open to the network.",
    )
    max_connections: int = Field(
        default=64, ge=2, le=1024,
        description="Connections served at once; more are answered 503 at once.",
    )
    timeout: Duration = Field(
        default=10.0, description="An idle or slow client is disconnected after this long."
    )
    history: Duration = Field(default=6 * 3600.0, description="Time span of the sparklines.")
    history_points: int = Field(
        default=360, ge=10, le=10000,
        description="Points per sparkline (memory: 24 bytes per point per quantity).",
    )

    @field_validator("listen", mode="before")
    @classmethod
    def _listen(cls, v: Any) -> Any:
        if v is None:
            return v
        parse_listen(str(v))
        return str(v)


# ---------------------------------------------------------------- root


class RootSection(Section):
    """The whole file, with devices still raw (validated per driver afterwards)."""

    gateway: GatewaySection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    devices: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[OutputConfig] = Field(
        default_factory=list,
        description="Relays, coils, setpoints and serial commands switchable from MQTT "
                    "(docs/control.md).",
    )
    inference: InferenceSection = Field(default_factory=InferenceSection)
    homeassistant: HomeAssistantSection = Field(default_factory=HomeAssistantSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    http: HttpSection = Field(default_factory=HttpSection)


class Config(Section):
    """A validated configuration."""

    gateway: GatewaySection
    mqtt: MqttSection
    buffer: BufferSection
    devices: tuple[DeviceBase, ...]
    inference: InferenceSection
    homeassistant: HomeAssistantSection
    metrics: MetricsSection
    http: HttpSection = Field(default_factory=HttpSection)
    outputs: tuple[AnyOutput, ...] = ()
    source: str = "<config>"

    @property
    def topic_prefix(self) -> str:
        return self.mqtt.topic_prefix or f"gateway/{self.gateway.id}"

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-gateway-{self.gateway.id}"

    def device(self, name: str) -> DeviceBase:
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)


__all__ = [
    "PASSWORD_HOME",
    "BufferSection",
    "Config",
    "DeviceBase",
    "DeviceHomeAssistant",
    "GatewaySection",
    "HomeAssistantSection",
    "HttpSection",
    "I2CAddress",
    "I2CDevice",
    "InferenceSection",
    "MetricsSection",
    "MqttSection",
    "PublishPolicy",
    "RootSection",
    "Section",
    "SerialDevice",
    "TlsSection",
]
