"""Boot settings: a TOML file plus TABLEGATE_* environment variables (environment wins).

Runtime choices a manager makes (target time, time zone, tokens, webhook clients) live in
SQLite and are changed through the API; this file only says how the box boots.
"""

from __future__ import annotations

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


class PrinterSetting(BaseModel):
    """One printer in the boot file: `[[printers]]` with id, name, address, station, paper."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=256)  # tcp://10.0.0.20:9100, serial:///dev/..
    station: str = Field("", max_length=32)
    paper: Literal["80mm", "58mm"] = "80mm"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TABLEGATE_", extra="forbid")

    host: str = "0.0.0.0"  # noqa: S104 - an appliance serves its LAN
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # Start even though gateway-id says this box had data and the database is gone (empty).
    new_database: bool = False
    # How often the database file's identity is compared with the open one (also checked
    # before every write transaction and every health answer).
    db_check_interval: float = Field(5.0, gt=0, le=300)
    demo: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    timezone: str = "UTC"
    target_time_default: int = Field(300, ge=1, le=86_400)
    new_order_event_type: Literal["NEW_ORDER", "ORDER_CREATED"] = "NEW_ORDER"
    token_window_seconds: float = Field(120.0, gt=0, le=3600)
    # One press of the button hands out at most this many tokens per name and in all; more
    # long-polls than max_waiting waiting for a press are refused at once (503 + Retry-After).
    token_window_per_name: int = Field(1, ge=1, le=100)
    token_window_max_tokens: int = Field(5, ge=1, le=1000)
    token_window_max_waiting: int = Field(8, ge=1, le=1000)
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A request body must arrive in full this long after its headers, or the connection closes.
    body_read_timeout: float = Field(30.0, gt=0, le=600)
    ws_queue_size: int = Field(4096, ge=8, le=100_000)
    # Frames waiting for one feed client (its queue plus the socket's unsent buffer), in bytes.
    ws_queue_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # The kernel send buffer of a feed socket (0 = the kernel's auto-tuning, up to megabytes).
    ws_socket_buffer: int = Field(128 * 1024, ge=0, le=16 * 1024 * 1024)
    ws_heartbeat: float = Field(20.0, gt=0, le=300)
    ws_auth_timeout: float = Field(10.0, gt=0, le=120)
    ws_send_timeout: float = Field(10.0, gt=0, le=120)
    ws_max_frame_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    allowed_origins: list[str] = []
    # Host names the gateway answers to besides IP literals, localhost, its host name and its
    # mDNS name (DNS-rebinding guard); ["*"] turns the check off (behind a reverse proxy).
    allowed_hosts: list[str] = Field([], max_length=100)
    outbound_allow: list[str] = []
    mdns_enabled: bool = True
    mdns_interfaces: list[str] | None = None
    instance_name: str = Field("Tablegate", min_length=1, max_length=63)
    # radio
    bluetooth: bool = True  # scan with the local adapter (a missing one is reported, not fatal)
    bluetooth_adapter: str | None = None  # e.g. "hci0"; None = BlueZ's default
    pads: list[str] = []  # serial ports of starters/clearers, e.g. /dev/serial/by-id/usb-...
    simulator: bool = False  # simulated trackers and pads (on with --demo)
    simulator_speed: float = Field(2.0, gt=0, le=100)  # how fast the simulated stories run
    simulator_seed: int | None = None
    debounce_readings: int = Field(3, ge=1, le=50)
    debounce_seconds: float = Field(0.3, ge=0, le=30)
    tracker_offline_after: float = Field(60.0, gt=0, le=86_400)
    battery_low_percent: int = Field(20, ge=0, le=100)
    auto_clear_after: float = Field(4 * 3600.0, ge=0, le=7 * 86_400)  # 0 = never
    page_duration: int = Field(60, ge=1, le=255)
    # a block of the event loop longer than this is logged with the task that held it
    loop_block_threshold: float = Field(0.25, ge=0.01, le=60)
    # SIGTERM: an orderly stop longer than this ends the process anyway (exit code 70)
    stop_timeout: float = Field(20.0, gt=0, le=600)
    # each stop stage (mDNS, radio, printers, outbox, store, ...): past this it is logged with
    # what still runs, cancelled, and the stop goes on to the next stage
    stop_stage_timeout: float = Field(3.0, gt=0, le=120)
    # printing (seed 000)
    printers: list[PrinterSetting] = []
    print_stations: dict[str, list[str]] = {}  # station -> printer ids, first = preferred
    print_report_url: str | None = None  # automatic reports (seed 000) are POSTed here
    print_kitchen_station: str = ""  # print a kitchen ticket for every new order to this station
    print_kitchen_needs_answer: bool = False  # those tickets wait for accept/refuse
    print_default_deadline: float = Field(300.0, gt=0, le=86_400)
    print_max_retries: int = Field(10, ge=1, le=100)
    print_ack_timeout: float = Field(10.0, gt=0, le=120)
    print_status_interval: float = Field(15.0, gt=0, le=3600)
    print_logo: Path | None = None  # a PNG printed on top of kitchen tickets
    printer_discovery: bool = False  # add network printers found by mDNS (_pdl-datastream._tcp)
    # outbox (deliveries to the internet)
    uplink_probe: list[str] = ["1.1.1.1:443", "9.9.9.9:443"]  # host:port; [] turns it off
    uplink_probe_interval: float = Field(30.0, gt=0, le=3600)
    deliveries_busy_rate: float = Field(50.0, ge=0, le=100_000)  # calls/s while orders change
    deliveries_quiet: float = Field(0.5, ge=0, le=60)
    deliveries_keep_days: float = Field(7.0, gt=0, le=3650)
    deliveries_dead_keep_days: float = Field(30.0, gt=0, le=3650)
    deliveries_prune_every: float = Field(3600.0, ge=0, le=86_400)  # 0 = never

    @field_validator("uplink_probe")
    @classmethod
    def _probe_targets(cls, value: list[str]) -> list[str]:
        import re

        for target in value:
            if not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", target):
                raise ValueError(f"uplink_probe target {target!r} is not host:port")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        import re

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
