"""mosquitto configuration for mutual TLS: each vehicle may use only its own topics.

With ``use_identity_as_username`` the broker takes the client certificate's common name as
the MQTT user name. Pattern rules (``%u`` is that name) let a vehicle write only under
``fleetcare/v1/vehicles/<its id>/`` and read only its own command and receipt topics; backend
clients get explicit read rights and the right to write every vehicle's receipt topic (a
receipt deletes spooled messages, so only the backend may say one). Anything not granted is
denied: mosquitto silently drops a denied publish (MQTT 3.1.1 has no way to say no), which
ingest never sees.

With ``use_username_as_clientid`` that name is the client id as well, whatever the client
asks for: no certificate can connect under another's client id, so a vehicle asking for
``fleetcare-ingest`` gets a session of its own name and ingest's persistent session (its
queue) stays untouched. Two processes with one certificate therefore share one session and
take it from each other: every ingest worker and the health check need certificates of their
own (the monitor users may read only ``$SYS/broker/#``, the counters the health check reads).

:func:`write_broker_config` adds the queue, size and persistence limits of
:mod:`pipeline.broker.limits`, names the user mosquitto drops to, and (run as root) hands the
server key and the data directory to that user, checking it can reach every file it opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from edge.wire import contract
from pipeline.broker.account import (
    Account,
    account,
    blocked,
    current_account,
    default_broker_account,
    hand_over,
    running_as_root,
    unreachable,
)
from pipeline.broker.limits import DEFAULT_LIMITS, BrokerLimits, durability_config
from pipeline.broker.pki import PkiError

VEHICLE_WRITE_KINDS = ("telemetry", "dtc", "health", "info")
"""Topics a vehicle may publish on, under its own prefix."""


BACKEND_USERS: Final = ("fleetcare-ingest",)
"""Certificate names that may read every vehicle (ingest's default client id)."""
MONITOR_USERS: Final = ("fleetcare-monitor",)
"""Certificate names that may read the broker's ``$SYS/broker/#`` counters, and nothing else."""
SYS_TOPICS: Final = "$SYS/broker/#"


def acl_text(backend_users: Sequence[str] = BACKEND_USERS,
             monitor_users: Sequence[str] = MONITOR_USERS) -> str:
    """The ACL file: per-vehicle patterns, the backend users' grants, the monitors' grant."""
    root = contract.TOPIC_ROOT
    lines = ["# fleetcare ACL: a vehicle (certificate CN = vehicle id) speaks only for itself."]
    lines += [f"pattern write {root}/vehicles/%u/{kind}" for kind in VEHICLE_WRITE_KINDS]
    lines.append(f"pattern read {root}/vehicles/%u/commands")
    lines.append(f"pattern read {root}/vehicles/%u/receipt")
    for user in backend_users:
        lines += ["", f"user {user}", f"topic read {root}/#",
                  f"topic write {contract.RECEIPT_TOPICS}"]
    for user in monitor_users:
        lines += ["", f"user {user}", f"topic read {SYS_TOPICS}"]
    return "\n".join(lines) + "\n"


def tls_listener_config(pki_dir: Path, acl_file: Path, *, port: int = 8883,
                        host: str = "127.0.0.1", server_name: str = "broker") -> str:
    """A mosquitto.conf listener block requiring a CA-signed, unrevoked client certificate."""
    return "\n".join([
        f"listener {port} {host}",
        f"cafile {pki_dir / 'ca.pem'}",
        f"certfile {pki_dir / f'{server_name}.pem'}",
        f"keyfile {pki_dir / f'{server_name}.key'}",
        f"crlfile {pki_dir / 'crl.pem'}",
        "require_certificate true",
        "use_identity_as_username true",
        "# The certificate's name is the client id too: nobody takes another's session.",
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
        f"acl_file {acl_file}",
        "",
    ])


def write_broker_config(pki_dir: Path, out_dir: Path, *, port: int = 8883,
                        host: str = "127.0.0.1",
                        backend_users: Sequence[str] = BACKEND_USERS,
                        monitor_users: Sequence[str] = MONITOR_USERS,
                        run_as: str | None = None, data_dir: Path | None = None,
                        limits: BrokerLimits = DEFAULT_LIMITS) -> Path:
    """Write ``mosquitto.conf`` and ``acl`` into ``out_dir``; returns the config's path.

    ``run_as`` is the ``user`` mosquitto drops to when root starts it: by default the
    ``mosquitto`` account when this runs as root (the key and ``data_dir``, default
    ``out_dir/data``, are then handed to it), else the caller, who owns the keys. Every file
    the broker opens is checked as that user would open it, so a broker that cannot read its
    key or save its sessions is refused here rather than at its start.

    Raises:
        PkiError: the PKI directory lacks the broker's certificate files, ``run_as`` is not
            a local user, or that user could not open a file the broker needs.
    """
    who = _broker_user(run_as)
    pki_dir, out_dir = pki_dir.absolute(), out_dir.absolute()  # mosquitto's cwd is not ours
    needed = [pki_dir / "ca.pem", pki_dir / "broker.pem", pki_dir / "broker.key",
              pki_dir / "crl.pem"]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise PkiError(f"{pki_dir} has no {', '.join(missing)}: run `fleetcare pki init` and "
                       f"`fleetcare pki issue {pki_dir} broker --server HOST` first")
    data = (data_dir if data_dir is not None else out_dir / "data").absolute()
    key, acl = pki_dir / "broker.key", out_dir / "acl"
    # Checked before anything is written or handed over: what root will hand to the broker
    # user (the key, the data directory) only needs its directories passable.
    handed = [key, data] if running_as_root() else []
    _check_reachable(who, [*(blocked(p, who) for p in [*handed, acl]),
                           *(unreachable(p, who) for p in needed if p not in handed)])
    out_dir.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    acl.write_text(acl_text(backend_users, monitor_users), encoding="utf-8")
    for path in handed:
        hand_over(path, who)  # the key stays 0600: readable by the broker only
    _check_reachable(who, [*(unreachable(p, who) for p in [*needed, acl]),
                           unreachable(data, who, write=True)])
    conf = out_dir / "mosquitto.conf"
    head = "\n".join([
        "# fleetcare mutual-TLS broker (fleetcare pki broker-config)",
        "per_listener_settings false",
        f"# mosquitto started as root drops to {who.name}, who owns broker.key and the data "
        "directory.",
        f"user {who.name}",
        "# Connections and errors; not 'information', which logs every (one-second) save.",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "",
    ])
    conf.write_text(head + durability_config(limits, data) + tls_listener_config(
        pki_dir, acl, port=port, host=host), encoding="utf-8")
    return conf


def _check_reachable(who: Account, reasons: list[str | None]) -> None:
    """Raise the first reason ``who`` could not open a broker file, with how to fix it."""
    found = [r for r in reasons if r is not None]
    if found:
        fix = (f"move them where {who.name} may enter, or name another user" if
               running_as_root() else
               f"run this as root to hand the key to {who.name}, or name the keys' owner")
        raise PkiError(f"mosquitto would run as {who.name} and could not open what it needs: "
                       f"{found[0]}; {fix} (--user)")


def _broker_user(name: str | None) -> Account:
    if name is None:
        return default_broker_account()
    if name == current_account().name:
        return current_account()
    found = account(name)
    if found is None:
        raise PkiError(f"user {name!r} does not exist on this machine (mosquitto would fall "
                       "back to 'nobody')")
    return found
