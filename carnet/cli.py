"""The ``carnet`` command line.

Each component registers its own sub-commands (``carnet.pki.commands``, ``carnet.pki.smime.commands``, …) with a
``register(subparsers)`` function; a handler receives the parsed arguments and the settings and returns the exit
status. Errors a user can fix are printed as one line on stderr with exit status 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from carnet.config import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


class UsageError(Exception):
    """An error the user can fix; printed without a traceback, exit status 2."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "data", None):
        overrides["data_dir"] = Path(args.data)
    if getattr(args, "domain", None):
        overrides["domain"] = args.domain
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    return load_settings(args.config, **overrides)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command accepts, so they may stand after the sub-command too."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file")
    parser.add_argument(
        "--data", metavar="DIR", default=argparse.SUPPRESS, help="data directory (default ./var)"
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="database URL (default SQLite in DIR)",
    )


def build_parser() -> argparse.ArgumentParser:
    from carnet import bootstrap, serve
    from carnet.directory import commands as directory_commands
    from carnet.pki import commands as pki_commands
    from carnet.pki.smime import commands as smime_commands

    parser = argparse.ArgumentParser(prog="carnet", description="carnet secure health messaging")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--data", metavar="DIR", help="data directory (default ./var)")
    parser.add_argument("--database-url", metavar="URL", help="database URL (default SQLite in the data dir)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bootstrap.register(sub)
    pki_commands.register(sub)
    smime_commands.register(sub)
    directory_commands.register(sub)
    directory_commands.register_trust(sub)
    serve.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        handler: Handler = args.handler
        return handler(args, settings)
    except (UsageError, FileNotFoundError, ValueError) as exc:
        print(f"carnet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
