"""How a feature's population joins `planfit synth`: each part runs after the ones added before it, so a part
may read what an earlier one wrote (interventions read the risk population's ground truth)."""

from __future__ import annotations

import argparse
from typing import Callable


def add_part(subparsers: argparse._SubParsersAction, write: Callable[[argparse.Namespace], None],
             option: str | None = None, help: str = "") -> None:
    """Chain `write(args)` onto `planfit synth`; `option` (e.g. `audit-members`) adds `--<option>`, the
    part's size, which `part_size` reads."""
    parser = subparsers.choices["synth"]
    if option:
        parser.add_argument(f"--{option}", type=int, default=None, help=help)
    previous = parser.get_default("func")

    def run(args: argparse.Namespace) -> int:
        status = previous(args)
        write(args)
        return status

    parser.set_defaults(func=run)


def part_size(args: argparse.Namespace, option: str, default: int) -> int:
    """`--<option>` when given, else `default`."""
    given = getattr(args, option.replace("-", "_"))
    return given if given is not None else default
