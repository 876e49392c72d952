"""The one entry point: `bootstrapd check | run | schema | ...`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from bootstrapd import __version__

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

    lab = sub.add_parser("lab", help="lab tools: `lab demo` boots phones on a private virtual LAN (root)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND", required=True)
    lab_sub.add_parser("demo", help="serve the example site to phones in network namespaces (--help for options)")

    s = sub.add_parser("schema", help="print the JSON Schema of the site file (for editors)")
    s.set_defaults(func=_cmd_schema)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["lab", "demo"]:  # the demo parses its own options
        from bootstrapd.lab.demo import main as demo_main

        return demo_main(argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(args.func(args))
