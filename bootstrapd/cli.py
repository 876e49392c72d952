"""The one entry point: `bootstrapd check | run | schema | ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bootstrapd import __version__

if TYPE_CHECKING:
    from bootstrapd.config.model import Site

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _cmd_check(args: argparse.Namespace) -> int:
    from bootstrapd.config import check_site

    if not os.path.isfile(args.site):
        print(f"bootstrapd check: no such file: {args.site}", file=sys.stderr)
        return EXIT_USAGE
    result = check_site(args.site)
    for d in result.diagnostics:
        print(d, file=sys.stderr)
    errors, warnings = len(result.errors), len(result.warnings)
    failed = errors > 0 or (args.strict and warnings > 0)
    status = "invalid" if failed else "valid"
    extra = " (warnings are fatal with --strict)" if args.strict and warnings and not errors else ""
    print(f"{args.site}: {status}: {errors} error(s), {warnings} warning(s){extra}")
    return EXIT_INVALID if failed else EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from bootstrapd.config.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from bootstrapd.service import run

    return int(run(args.config))


def _state_dir(args: argparse.Namespace) -> str | None:
    """The site's state_dir, or None after printing why the site file cannot be used."""
    site = _site(args)
    return None if site is None else site.state_dir


def _cmd_leases(args: argparse.Namespace) -> int:
    import time

    from bootstrapd.dhcp.store_sqlite import DB_NAME, open_readonly, shard_db_name
    from bootstrapd.dhcp.stores import open_lease_store
    from bootstrapd.errors import StoreError
    from bootstrapd.listings import LEASE_COLUMNS, lease_rows, render

    site = _site(args)
    if site is None:
        return EXIT_INVALID
    from bootstrapd.config.model import StoreBackend

    workers = site.dhcp.workers
    shared = site.store.backend is StoreBackend.POSTGRESQL
    names = [shard_db_name(k) for k in range(workers)] if workers >= 2 and not shared else [DB_NAME]
    leases: list[Any] = []
    for name in names:  # one SQLite store per DHCP worker; one shared store
        try:
            store = (open_lease_store(site, readonly=True) if shared
                     else open_readonly(os.path.join(site.state_dir, name)))
        except StoreError as e:
            print(f"bootstrapd leases: {e}", file=sys.stderr)
            return EXIT_INVALID
        try:
            leases.extend(store.iter_all())
        finally:
            store.close()
    leases.sort(key=lambda lease: lease.address)
    rows = lease_rows(leases, time.time())
    sys.stdout.write(render(rows, LEASE_COLUMNS, args.format))
    return EXIT_OK


def _cmd_devices(args: argparse.Namespace) -> int:
    from bootstrapd.errors import StoreError
    from bootstrapd.listings import DEVICE_COLUMNS, device_rows, render
    from bootstrapd.observability.devices import read_devices

    state_dir = _state_dir(args)
    if state_dir is None:
        return EXIT_INVALID
    try:
        devices = read_devices(state_dir)
    except StoreError as e:
        print(f"bootstrapd devices: {e}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(render(device_rows(devices), DEVICE_COLUMNS, args.format))
    return EXIT_OK


def _site(args: argparse.Namespace) -> Site | None:
    """The loaded site, or None after printing why the site file cannot be used."""
    from bootstrapd.config import check_site

    if not os.path.isfile(args.config):
        print(f"bootstrapd {args.command}: no such file: {args.config}", file=sys.stderr)
        return None
    loaded = check_site(args.config)
    if loaded.site is None:
        for d in loaded.errors:
            print(d, file=sys.stderr)
    return loaded.site


def _cmd_report(args: argparse.Namespace) -> int:
    import time

    from bootstrapd.signoff import StoreError, load_report, render

    site = _site(args)
    if site is None:
        return EXIT_INVALID
    if args.all_sites:
        return _report_all_sites(site, args.format)
    try:
        report, problems = load_report(site, time.time())
    except StoreError as e:
        print(f"bootstrapd report: {e}", file=sys.stderr)
        return EXIT_INVALID
    for p in problems:
        print(p, file=sys.stderr)
    sys.stdout.write(render(report, args.format, site.site))
    return EXIT_OK


def _report_all_sites(site: Site, fmt: str) -> int:
    """The central database's view of every site (the plain `report` never touches it)."""
    import time

    from bootstrapd.signoff import StoreError, render_all_sites

    try:
        from bootstrapd.central import central_dsn
        from bootstrapd.central.db import read_sites

        sites = read_sites(central_dsn(site))
    except ImportError:
        print("bootstrapd report: --all-sites needs psycopg: pip install 'bootstrapd[postgresql]'", file=sys.stderr)
        return EXIT_INVALID
    except StoreError as e:
        print(f"bootstrapd report --all-sites: {e}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(render_all_sites(sites, time.time(), fmt))
    return EXIT_OK


def _dhcp_worker(argv: list[str]) -> int:
    from bootstrapd.transport.dhcp_worker import run_worker

    p = argparse.ArgumentParser(prog="bootstrapd dhcp-worker", description="internal: started by `bootstrapd run`")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--fds", required=True, help="channel, inbox, then every worker's inbox")
    args = p.parse_args(argv)
    fds = [int(fd) for fd in args.fds.split(",")]
    return run_worker(args.config, args.index, args.count, fds[0], fds[1], fds[2:])


def _listing_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str,
                    func: object) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.add_argument("-c", "--config", required=True, metavar="SITE.yaml", help="the site file (for state_dir)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="a JSON array of objects")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header row")
    p.set_defaults(func=func, format="table")
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bootstrapd",
        description="Zero-touch DHCPv4 and DNS bootstrap for staging floors of Cisco MPP phones.",
        epilog="Exit status: 0 success, 1 invalid site file or failure, 2 usage error. "
        "Start with: bootstrapd check config/site.example.yaml",
    )
    p.add_argument("--version", action="version", version=f"bootstrapd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("check", help="validate a site file; print every located error and warning")
    c.add_argument("site", metavar="SITE.yaml")
    c.add_argument("--strict", action="store_true", help="treat warnings as errors")
    c.set_defaults(func=_cmd_check)

    r = sub.add_parser("run", help="serve DHCP and DNS for a site until SIGTERM (SIGHUP reloads)")
    r.add_argument("-c", "--config", required=True, metavar="SITE.yaml")
    r.set_defaults(func=_cmd_run)

    _listing_parser(sub, "leases", "list the lease database (also while the daemon runs)", _cmd_leases)
    _listing_parser(sub, "devices", "list every device seen and the furthest boot stage observed", _cmd_devices)

    rep = _listing_parser(sub, "report", "the sign-off report: every device's fate against the inventory",
                          _cmd_report)
    rep.add_argument("--all-sites", action="store_true",
                     help="every site's devices from the central database (the site file's central:)")

    lab = sub.add_parser("lab", help="lab tools: `lab demo` boots phones on a private virtual LAN (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    lab_sub.add_parser("demo", help="serve the example site to phones in network namespaces (--help for options)")
    sub.add_parser("simulate", help="boot simulated MPP phones in a lab namespace (root; --help for options)")

    s = sub.add_parser("schema", help="print the JSON Schema of the site file (for editors)")
    s.set_defaults(func=_cmd_schema)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["lab", "demo"]:  # the demo parses its own options
        from bootstrapd.lab.demo import main as demo_main

        return demo_main(argv[2:])
    if argv[:1] == ["dhcp-worker"]:  # internal: a DHCP worker process, started by `run` (dhcp.workers >= 1)
        return _dhcp_worker(argv[1:])
    if argv[:1] == ["simulate"]:  # the simulator parses its own options
        from bootstrapd.sim.cli import main as simulate_main

        return simulate_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))
