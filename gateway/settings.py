"""Boot settings: a TOML file plus TABLEGATE_* environment variables (environment wins).

Runtime choices a manager makes (target time, time zone, tokens, webhook clients) live in
SQLite and are changed through the API; this file only says how the box boots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CHECKOUT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    # A source checkout keeps its state beside itself; an installed box uses the FHS place.
    if (CHECKOUT / "pyproject.toml").exists() and (CHECKOUT / "gateway").is_dir():
        return CHECKOUT / "var"
    return Path("/var/lib/tablegate")


# Hints for the generated README table (gateway.settings_table): a unit for the default, or
# the default as a reader should see it when the value itself says little (None, a factory).
S: JsonDict = {"unit": "s"}
BYTES: JsonDict = {"unit": "bytes"}


def shown(text: str) -> JsonDict:
    return {"shown": text}


class PrinterSetting(BaseModel):
    """One printer in the boot file: `[[printers]]` with id, name, address, station, paper."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=256)  # tcp://10.0.0.20:9100, serial:///dev/..
    station: str = Field("", max_length=32)
    paper: Literal["80mm", "58mm"] = "80mm"


class Settings(BaseSettings):
    """Every boot setting with its default and a one-line meaning (`description`); the README's
    Configuration table is generated from this class (`python -m gateway.settings_table`)."""

    model_config = SettingsConfigDict(env_prefix="TABLEGATE_", extra="forbid")

    host: str = Field(
        "0.0.0.0",  # noqa: S104 - an appliance serves its LAN
        description="address the API listens on (`0.0.0.0` or `::`: every interface); also "
        "`--host`. mDNS advertises only the addresses the API listens on",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port of the API; also `--port`")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="database, gateway id, admin cookie",
        json_schema_extra=shown("`./var` in a checkout, `/var/lib/tablegate` installed"),
    )
    synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL",
        description="SQLite durability; `NORMAL` only for the power-cut harness's control run",
    )
    new_database: bool = Field(
        False,
        description="start empty although `gateway-id` says this box had data (also "
        "`--new-database`)",
    )
    # Also checked before every write transaction and every health answer.
    db_check_interval: float = Field(
        5.0,
        gt=0,
        le=300,
        json_schema_extra=S,
        description="how often the database file's identity is compared with the open one",
    )
    demo: bool = Field(
        False,
        description="demo mode (also `--demo`): the simulated restaurant, a virtual "
        "kitchen printer, the token window open for the first two minutes",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="least severe log level written (`DEBUG`, `INFO`, `WARNING`, `ERROR`)"
    )
    timezone: str = Field("UTC", description="initial value of the runtime time zone")
    target_time_default: int = Field(
        300,
        ge=1,
        le=86_400,
        json_schema_extra=S,
        description="initial value of the runtime target time",
    )
    new_order_event_type: Literal["NEW_ORDER", "ORDER_CREATED"] = Field(
        "NEW_ORDER",
        description="`ORDER_CREATED` for clients built against the commercial firmware",
    )
    token_window_seconds: float = Field(
        120.0,
        gt=0,
        le=3600,
        json_schema_extra=S,
        description="one press of the button: how long clients may ask for a token",
    )
    token_window_per_name: int = Field(
        1, ge=1, le=100, description="one press of the button: tokens per client name"
    )
    token_window_max_tokens: int = Field(
        5, ge=1, le=1000, description="one press of the button: tokens in all"
    )
    token_window_max_waiting: int = Field(
        8,
        ge=1,
        le=1000,
        description="long-polls that may wait for a press; the next one gets 503 at once",
    )
    max_body_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        json_schema_extra=BYTES,
        description="larger request bodies get 413",
    )
    body_read_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        json_schema_extra=S,
        description="a body not in full this long after its headers: 408, connection closed",
    )
    ws_queue_size: int = Field(
        4096,
        ge=8,
        le=100_000,
        description="feed: a client more events behind than this is cut off (4008, connection "
        "aborted) and resumes with `since`",
    )
    ws_queue_bytes: int = Field(
        4 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        json_schema_extra=BYTES,
        description="feed: the same for bytes waiting (queue plus the socket's unsent buffer)",
    )
    ws_socket_buffer: int = Field(
        128 * 1024,
        ge=0,
        le=16 * 1024 * 1024,
        json_schema_extra=BYTES,
        description="kernel send buffer of a feed socket (0 = the kernel's auto-tuning)",
    )
    ws_heartbeat: float = Field(
        20.0,
        gt=0,
        le=300,
        json_schema_extra=S,
        description="feed ping interval; a client that does not answer is closed",
    )
    ws_auth_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        json_schema_extra=S,
        description="a feed client not authenticated this long after the upgrade: closed 4001",
    )
    ws_send_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        json_schema_extra=S,
        description="a feed client whose send blocks this long is cut off (4008)",
    )
    ws_max_frame_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        json_schema_extra=BYTES,
        description="largest frame a feed client may send (larger: closed 1009)",
    )
    allowed_origins: list[str] = Field(
        [], description="extra browser origins allowed on the WebSocket"
    )
    allowed_hosts: list[str] = Field(
        [],
        max_length=100,
        description="names the box answers to besides its IP addresses, `localhost`, its host "
        "name, `<host>.local` and its mDNS name (DNS rebinding guard: other `Host`s get 421); "
        '`["*"]` turns the check off (behind a reverse proxy)',
    )
    outbound_allow: list[str] = Field(
        [],
        description="hosts (names, IPs, `host:port`) that webhook, report and printer addresses "
        "may name although local (loopback, link-local, metadata …): judged in every spelling "
        "and again at connect time",
    )
    mdns_enabled: bool = Field(
        True, description="DNS-SD advertisement (`_tracker-http._tcp`, `_http._tcp`)"
    )
    mdns_interfaces: list[str] | None = Field(
        None,
        json_schema_extra=shown("all"),
        description="addresses of the interfaces mDNS speaks on (default: all for a wildcard "
        "`host`, else `host`'s); a loopback `host` is advertised only when named here",
    )
    instance_name: str = Field(
        "Tablegate", min_length=1, max_length=63, description="DNS-SD instance name"
    )
    # radio
    bluetooth: bool = Field(
        True, description="scan for trackers with the local adapter (a missing one is a warning)"
    )
    bluetooth_adapter: str | None = Field(
        None,
        json_schema_extra=shown("BlueZ's default"),
        description="adapter to scan with, e.g. `hci0`",
    )
    pads: list[str] = Field(
        [], description="serial ports of starters and clearers (`/dev/serial/by-id/…`)"
    )
    simulator: bool = Field(
        False,
        json_schema_extra=shown("`false` (on with `--demo`)"),
        description="the simulated restaurant: trackers 1-12 and three pads; it only touches "
        "orders it started itself",
    )
    simulator_speed: float = Field(
        2.0, gt=0, le=100, description="how fast the simulated stories run (2 = twice real time)"
    )
    simulator_seed: int | None = Field(
        None,
        json_schema_extra=shown("random"),
        description="seed of the simulated restaurant (the same seed tells the same story)",
    )
    debounce_readings: int = Field(
        3, ge=1, le=50, description="adverts that must agree before a table counts"
    )
    debounce_seconds: float = Field(
        0.3,
        ge=0,
        le=30,
        json_schema_extra=S,
        description="the agreeing adverts must span at least this long",
    )
    tracker_offline_after: float = Field(
        60.0,
        gt=0,
        le=86_400,
        json_schema_extra=S,
        description="a tracker unheard this long is TRACKER_OFFLINE",
    )
    battery_low_percent: int = Field(
        20, ge=0, le=100, description="below this battery percentage: TRACKER_BATTERY_LOW"
    )
    auto_clear_after: float = Field(
        4 * 3600.0,
        ge=0,
        le=7 * 86_400,
        json_schema_extra=S,
        description="orders older than this are cleared (AUTOMATIC); 0 = never",
    )
    page_duration: int = Field(
        60,
        ge=1,
        le=255,
        json_schema_extra=S,
        description="one page; with `tracking` it is repeated until picked up or cancelled",
    )
    loop_block_threshold: float = Field(
        0.25,
        ge=0.01,
        le=60,
        json_schema_extra=S,
        description="event-loop blocks longer than this are logged with what held the loop",
    )
    stop_timeout: float = Field(
        20.0,
        gt=0,
        le=600,
        json_schema_extra=S,
        description="SIGTERM: an orderly stop longer than this ends the process (exit 70)",
    )
    stop_stage_timeout: float = Field(
        3.0,
        gt=0,
        le=120,
        json_schema_extra=S,
        description="each stop stage (mDNS, radio, printers, outbox, store): past this it is "
        "logged with what still runs, cancelled, and the stop goes on",
    )
    # printing (seed 000)
    printers: list[PrinterSetting] = Field(
        [],
        description="`[[printers]]` tables: `id` (≤ 16), `name`, `address` "
        "(`tcp://host:9100`, `serial:///dev/ttyUSB0?baud=9600`, `usb:///dev/usb/lp0`), "
        "`station`, `paper` (`80mm`/`58mm`)",
    )
    print_stations: dict[str, list[str]] = Field(
        {}, description="station → printer ids in order of preference (fallback when one is down)"
    )
    print_report_url: str | None = Field(
        None, description="Imprimo automatic reports are POSTed here through the durable outbox"
    )
    print_kitchen_station: str = Field(
        "",
        json_schema_extra=shown('`""` (`kitchen` in demo)'),
        description="a kitchen ticket for every new order to this station, committed with it",
    )
    print_kitchen_needs_answer: bool = Field(
        False, description="those kitchen tickets wait for accept/refuse"
    )
    print_default_deadline: float = Field(
        300.0,
        gt=0,
        le=86_400,
        json_schema_extra=S,
        description="deadline of a print request that names none (from now)",
    )
    print_max_retries: int = Field(
        10, ge=1, le=100, description="sends of one print request before it is archived"
    )
    print_ack_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        json_schema_extra=S,
        description="how long a printer has to confirm a job (`GS r 1`); a silent one's job is "
        "archived `unknown`, never resent",
    )
    print_status_interval: float = Field(
        15.0, gt=0, le=3600, json_schema_extra=S, description="health poll of an idle printer"
    )
    print_logo: Path | None = Field(None, description="PNG printed at the top of kitchen tickets")
    printer_discovery: bool = Field(
        False,
        description="add network printers announced by mDNS (`_pdl-datastream._tcp`); one moves "
        "to a new address only with the identity it was found with, else a manager confirms",
    )
    # outbox (deliveries to the internet)
    uplink_probe: list[str] = Field(
        ["1.1.1.1:443", "9.9.9.9:443"],
        description="`host:port` targets the outbox connects to, after a failed delivery, to "
        "tell a dead receiver from a dead internet link; `[]` turns the check off",
    )
    uplink_probe_interval: float = Field(
        30.0,
        gt=0,
        le=3600,
        json_schema_extra=S,
        description="while the link is down, how often it is probed again",
    )
    deliveries_busy_rate: float = Field(
        50.0,
        ge=0,
        le=100_000,
        description="webhook calls per second at most while orders change (0 = no limit)",
    )
    deliveries_quiet: float = Field(
        0.5,
        ge=0,
        le=60,
        json_schema_extra=S,
        description="without an order change this long, a backlog drains at full speed",
    )
    deliveries_keep_days: float = Field(
        7.0, gt=0, le=3650, description="days delivered webhooks are kept"
    )
    deliveries_dead_keep_days: float = Field(
        30.0, gt=0, le=3650, description="days failed (dead-letter) webhooks are kept"
    )
    deliveries_prune_every: float = Field(
        3600.0,
        ge=0,
        le=86_400,
        json_schema_extra=S,
        description="how often old deliveries are pruned (0 = never)",
    )

    @field_validator("uplink_probe")
    @classmethod
    def _probe_targets(cls, value: list[str]) -> list[str]:
        for target in value:
            if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", target):
                raise ValueError(f"uplink_probe target {target!r} is not host:port")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        names = []
        for name in value:
            name = name.strip().lower().rstrip(".")
            if name != "*" and not re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", name[:253]):
                raise ValueError(f"allowed_hosts entry {name!r} is not a host name (or *)")
            names.append(name)
        return names

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _printing(self) -> Settings:
        # Checked at boot, with the outbound allow-list: a typo'd printer must not crash later.
        from gateway.core.netguard import forbidden_reason
        from gateway.core.printing import device_spec_problem

        allow = frozenset(self.outbound_allow)
        if self.print_report_url and (why := forbidden_reason(self.print_report_url, allow)):
            raise ValueError(f"print_report_url refused: {why}")
        seen: set[str] = set()
        for p in self.printers:
            if p.id in seen:
                raise ValueError(f"printers: id {p.id!r} appears twice")
            seen.add(p.id)
            if why := device_spec_problem(p.id, p.name, p.address, p.station, p.paper, allow):
                raise ValueError(f"printers[{p.id}]: {why}")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / "tablegate.db"

    @property
    def admin_cookie_path(self) -> Path:
        return self.data_dir / "admin.cookie"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = _TOML_FILE
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


_TOML_FILE: Path | None = None


class SettingsError(Exception):
    """Raised with one readable line that names the offending key."""


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    global _TOML_FILE
    if config_file is not None and not config_file.is_file():
        raise SettingsError(f"config file {config_file} does not exist")
    _TOML_FILE = config_file
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "settings"
        raise SettingsError(f"invalid setting {key}: {err['msg']}") from None
    except ValueError as exc:  # a TOML file that does not parse
        raise SettingsError(f"invalid config file {config_file}: {exc}") from None
    finally:
        _TOML_FILE = None
