"""``bando officer-token OFFICER_ID``: a new token for an officer, and its hash line.

    bando officer-token officer-district-08-03 [--append TOKENS.jsonl]

Prints the token (give it to the officer; it is shown once and stored nowhere) on the first
line and the token file line (a salted hash) on the second. ``--append`` also adds that line
to the token file, created readable by its owner only. Revoking a token is deleting its line.
"""

from __future__ import annotations

import argparse
import os
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0] if __doc__ else None
    parser.add_argument("officer_id", help="the officer_id carried by their dossier events")
    parser.add_argument("--append", metavar="FILE", help="append the hash line to this file")


def run(args: argparse.Namespace) -> int:
    from leaders.tokens import hash_line, new_token

    officer = args.officer_id
    if not officer or len(officer) > 128:
        print("bando officer-token: an officer_id has 1 to 128 characters", file=sys.stderr)
        return 2
    token = new_token()
    line = hash_line(officer, token)
    if args.append:
        fd = os.open(args.append, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    print(token)
    print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bando officer-token")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
