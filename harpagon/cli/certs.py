"""`harpagon certs`: a CA and mutual-TLS certificates for the control plane."""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, positive_int

#: The CA's default validity (days): long, so that leaves rotate under the same CA for years.
CA_DAYS = 3650


def add_parser(sub) -> None:
    """`harpagon certs`."""
    ce = sub.add_parser("certs", help="make a CA and mutual-TLS certificates for the control plane",
                        description="Write DIR/ca.crt and DIR/ca.key, and for each role (controller, frontend, "
                                    "worker) DIR/ROLE/{ca.crt,tls.crt,tls.key}: give each component "
                                    "--tls-dir DIR/ROLE (in Kubernetes, one Secret per role). A certificate's "
                                    "identity is its role, so peers' addresses need not be known in advance. "
                                    "The CA outlives the certificates (--ca-days): rotate them with --renew, "
                                    "which keeps DIR/ca.crt and DIR/ca.key, so peers need no new CA.")
    ce.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="folder to write (created if missing); it must be yours and not a symbolic link")
    ce.add_argument("--hosts", nargs="*", default=[], metavar="NAME",
                    help="extra DNS names or IP addresses for every certificate (e.g. a client-facing name)")
    ce.add_argument("--days", type=positive_int, default=365,
                    help="validity of the role certificates in days (default 365)")
    ce.add_argument("--ca-days", type=positive_int, default=None, metavar="DAYS",
                    help=f"validity of the CA in days, at least --days (default {CA_DAYS}, or --days if longer)")
    ce.add_argument("--renew", action="store_true",
                    help="keep the CA DIR holds (ca.crt, ca.key) and write new role certificates signed by it, "
                         "replacing the old ones")
    ce.add_argument("--force", action="store_true",
                    help="replace files DIR already holds (default: refuse); each is written anew and renamed "
                         "over the old one, so a symbolic link there is replaced, never followed")
    ce.set_defaults(func=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    from harpagon.runtime.wire.tls import ROLES, make_certs, not_after

    ca_days = args.ca_days
    if ca_days is None and not args.renew:
        ca_days = max(CA_DAYS, args.days)
    try:
        root = make_certs(args.out, args.hosts, args.days, force=args.force, ca_days=ca_days, renew=args.renew)
        ca_end = datetime.datetime.fromtimestamp(not_after((root / "ca.crt").read_bytes()), datetime.UTC)
    except (OSError, ValueError) as exc:
        print(f"harpagon certs: {exc}", file=sys.stderr)
        return EXIT_INVALID
    kept = "kept, " if args.renew else ""
    print(f"CA: {root / 'ca.crt'} ({kept}expires {ca_end:%Y-%m-%d}; keep {root / 'ca.key'} private)")
    print(f"certificates: expire in {args.days} days; renew them with --renew before then")
    for role in ROLES:
        print(f"{role}: --tls-dir {root / role}")
    return 0
