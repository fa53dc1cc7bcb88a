"""`harpagon certs`: a CA and mutual-TLS certificates for the control plane."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harpagon.cli.common import EXIT_INVALID, positive_int


def add_parser(sub) -> None:
    """`harpagon certs`."""
    ce = sub.add_parser("certs", help="make a CA and mutual-TLS certificates for the control plane",
                        description="Write DIR/ca.crt and DIR/ca.key, and for each role (controller, frontend, "
                                    "worker) DIR/ROLE/{ca.crt,tls.crt,tls.key}: give each component "
                                    "--tls-dir DIR/ROLE (in Kubernetes, one Secret per role). A certificate's "
                                    "identity is its role, so peers' addresses need not be known in advance.")
    ce.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="folder to write (created if missing); it must be yours and not a symbolic link")
    ce.add_argument("--hosts", nargs="*", default=[], metavar="NAME",
                    help="extra DNS names or IP addresses for every certificate (e.g. a client-facing name)")
    ce.add_argument("--days", type=positive_int, default=365, help="validity in days (default 365)")
    ce.add_argument("--force", action="store_true",
                    help="replace files DIR already holds (default: refuse); each is written anew and renamed "
                         "over the old one, so a symbolic link there is replaced, never followed")
    ce.set_defaults(func=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    from harpagon.runtime.wire.tls import ROLES, make_certs

    try:
        root = make_certs(args.out, args.hosts, args.days, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"harpagon certs: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"CA: {root / 'ca.crt'} (keep {root / 'ca.key'} private)")
    for role in ROLES:
        print(f"{role}: --tls-dir {root / role}")
    return 0
