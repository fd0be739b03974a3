"""mosquitto configuration for mutual TLS: each vehicle may use only its own topics.

With ``use_identity_as_username`` the broker takes the client certificate's common name as
the MQTT user name. Pattern rules (``%u`` is that name) let a vehicle write only under
``fleetcare/v1/vehicles/<its id>/`` and read only its own command topic; backend clients get
explicit read rights. Anything not granted is denied: mosquitto silently drops a denied
publish (MQTT 3.1.1 has no way to say no), which ingest never sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge.wire import contract

VEHICLE_WRITE_KINDS = ("telemetry", "dtc", "health")
"""Topics a vehicle may publish on, under its own prefix."""


def acl_text(backend_users: Sequence[str] = ("fleetcare-ingest",)) -> str:
    """The ACL file: per-vehicle patterns, then the backend users' grants."""
    root = contract.TOPIC_ROOT
    lines = ["# fleetcare ACL: a vehicle (certificate CN = vehicle id) speaks only for itself."]
    lines += [f"pattern write {root}/vehicles/%u/{kind}" for kind in VEHICLE_WRITE_KINDS]
    lines.append(f"pattern read {root}/vehicles/%u/commands")
    for user in backend_users:
        lines += ["", f"user {user}", f"topic read {root}/#"]
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
        "tls_version tlsv1.2",
        f"acl_file {acl_file}",
        "",
    ])


def write_broker_config(pki_dir: Path, out_dir: Path, *, port: int = 8883,
                        host: str = "127.0.0.1",
                        backend_users: Sequence[str] = ("fleetcare-ingest",),
                        run_as: str | None = None) -> Path:
    """Write ``mosquitto.conf`` and ``acl`` into ``out_dir``; returns the config's path.

    mosquitto started as root drops to the ``mosquitto`` user, which must then be able to
    read the server key; ``run_as`` names another user (e.g. the one that owns the keys).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    acl = out_dir / "acl"
    acl.write_text(acl_text(backend_users), encoding="utf-8")
    conf = out_dir / "mosquitto.conf"
    head = "per_listener_settings false\n" + (f"user {run_as}\n" if run_as else "")
    conf.write_text(head + tls_listener_config(
        pki_dir, acl, port=port, host=host), encoding="utf-8")
    return conf
