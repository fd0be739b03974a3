"""``fleetcare pki``: the vehicle certificate authority and the broker's TLS/ACL config.

The CA key's password comes from ``FLEETCARE_PIPELINE__CA_KEY_PASSWORD`` or a file named by
``FLEETCARE_PIPELINE__CA_KEY_PASSWORD_FILE``, never from the command line (argv is visible to
every user of the machine in ``ps``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import SecretStr

from pipeline.broker.limits import derive_limits
from pipeline.cli.broker_options import add_fleet_size_argument

SubParsers = argparse._SubParsersAction


def register_pki(sub: SubParsers) -> None:
    """``fleetcare pki init|issue|revoke|broker-config``."""
    pki = sub.add_parser("pki", help="certificates for vehicles, backend and broker",
                         description="A small CA: one client certificate per vehicle (its "
                                     "common name is the vehicle id), expiry, revocation, and "
                                     "the mosquitto TLS listener and ACL that enforce them.")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="SUBCOMMAND", required=True)
    init = pki_sub.add_parser("init", help="create the certificate authority (ca.key encrypted "
                                           "when FLEETCARE_PIPELINE__CA_KEY_PASSWORD[_FILE] "
                                           "is set)")
    init.add_argument("dir", type=Path, help="the PKI directory to create")
    init.add_argument("--days", type=int, default=3650, help="the CA certificate's validity")
    init.set_defaults(handler=_init)
    issue = pki_sub.add_parser("issue", help="issue a certificate (vehicle id, backend or broker)")
    issue.add_argument("dir", type=Path, help="the PKI directory (pki init made it)")
    issue.add_argument("name", help="vehicle id, backend client name, or broker name")
    issue.add_argument("--days", type=int, default=365, help="the certificate's validity")
    issue.add_argument("--server", action="append", metavar="HOST",
                       help="make it a broker server certificate for this host name or IP; "
                            "repeat, or give a comma list, for several (default: a client "
                            "certificate)")
    issue.add_argument("--key-password-file", type=Path, metavar="FILE",
                       help="encrypt the issued private key with the password in FILE")
    issue.set_defaults(handler=_issue)
    revoke = pki_sub.add_parser("revoke", help="revoke a certificate and rewrite crl.pem")
    revoke.add_argument("dir", type=Path, help="the PKI directory")
    revoke.add_argument("name", help="the certificate's name (vehicle id, client or broker)")
    revoke.set_defaults(handler=_revoke)
    conf = pki_sub.add_parser("broker-config",
                              help="write mosquitto.conf (TLS listener, queue limits, "
                                   "persistence) and the per-vehicle ACL")
    conf.add_argument("dir", type=Path, help="the PKI directory")
    conf.add_argument("--out", type=Path, required=True, help="where to write the files")
    conf.add_argument("--port", type=int, default=8883, help="the TLS listener's port")
    conf.add_argument("--host", default="127.0.0.1", help="the TLS listener's address")
    conf.add_argument("--backend-user", action="append", default=None,
                      help="certificate name allowed to read every vehicle (repeatable; "
                           "default fleetcare-ingest)")
    conf.add_argument("--monitor-user", action="append", default=None,
                      help="certificate name allowed to read only the broker's $SYS counters, "
                           "for the health check (repeatable; default fleetcare-monitor)")
    conf.add_argument("--user", help="who mosquitto runs as when started by root (default: "
                                     "mosquitto when this runs as root, else you); run as "
                                     "root, the broker key and data directory are handed to "
                                     "that user")
    conf.add_argument("--data-dir", type=Path,
                      help="where mosquitto saves its sessions (default: OUT/data)")
    add_fleet_size_argument(conf)
    conf.set_defaults(handler=_broker_config)


def _init(args: argparse.Namespace) -> int:
    from pipeline.broker import pki

    print(pki.init_ca(args.dir, days=args.days, password=_ca_password()))
    return 0


def _issue(args: argparse.Namespace) -> int:
    from pipeline.broker import pki

    issued = pki.issue(args.dir, args.name, days=args.days,
                       server_hosts=tuple(host.strip() for given in args.server or ()
                                          for host in given.split(",") if host.strip()),
                       ca_password=_ca_password(),
                       key_password=_key_password(args.key_password_file))
    print(f"{issued.cert} {issued.key} serial={issued.serial} "
          f"not_after={issued.not_after:%Y-%m-%dT%H:%M:%SZ}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from pipeline.broker import pki

    serial = pki.revoke(args.dir, args.name, ca_password=_ca_password())
    print(f"revoked {args.name} serial={serial}; reload the broker")
    return 0


def _broker_config(args: argparse.Namespace) -> int:
    from pipeline.broker.acl import BACKEND_USERS, MONITOR_USERS, write_broker_config

    print(write_broker_config(args.dir, args.out, port=args.port, host=args.host,
                              backend_users=tuple(args.backend_user or BACKEND_USERS),
                              monitor_users=tuple(args.monitor_user or MONITOR_USERS),
                              run_as=args.user, data_dir=args.data_dir,
                              limits=derive_limits(args.fleet_size)))
    return 0


def _ca_password() -> SecretStr | None:
    from pipeline.config import load_pipeline_settings

    return load_pipeline_settings().ca_key_password


def _key_password(path: Path | None) -> SecretStr | None:
    """The password in ``path`` (one trailing line break dropped), or None without a file."""
    from edge.wire.secrets import read_secret_files
    from pipeline.broker.pki import PkiError

    if path is None:
        return None
    try:
        password = read_secret_files({"key_password_file": path}, ("key_password",))
    except ValueError as exc:
        raise PkiError(str(exc).replace("key_password_file", "--key-password-file")) from None
    if not password["key_password"]:
        raise PkiError(f"--key-password-file {path} is empty")
    return SecretStr(password["key_password"])
