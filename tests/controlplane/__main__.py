"""`python -m tests.controlplane build|up` — see docs/testing-controlplane.md."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m tests.controlplane build [parts...] [--force] [--regen] [--print-dir]\n"
        "       python -m tests.controlplane up [--workdir DIR] [--no-kuberay] [--process-nodes N] [--process-gpu-nodes M]"
    )
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "build":
        from tests.controlplane import build

        return build.main(rest)
    if cmd == "up":
        from tests.controlplane import plane

        return plane.main_up(rest)
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
