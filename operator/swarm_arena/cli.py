"""`swarm-arena`: run, validate and describe SwarmEvaluations from a terminal.

The same manifest a user would `kubectl apply` runs here on an embedded Ray, so every command
starts with the exact checks the API server (and the operator) would make.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarm_arena.api.report import RunReport


def _cmd_crd(args: argparse.Namespace) -> int:
    from swarm_arena.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from swarm_arena.api.validation import ManifestError, load_and_validate

    failed = 0
    for path in args.files:
        try:
            load_and_validate(path, check_imports=not args.no_imports)
        except ManifestError as exc:
            failed += 1
            print(f"{path}: invalid", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        else:
            print(f"{path}: valid")
    return 1 if failed else 0


def _run_with_progress(evaluation, args: argparse.Namespace) -> RunReport:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from swarm_arena.arena.runner import run_evaluation

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes"),
        TextColumn("{task.fields[agent_steps]:,} agent-steps"),
        TimeElapsedColumn(),
    )
    total = None
    with Progress(*columns, console=console, transient=False, disable=args.quiet) as bar:
        task = bar.add_task(evaluation.qualified_name, total=total, agent_steps=0)

        def on_progress(progress) -> None:
            bar.update(
                task,
                completed=progress.episodes_completed,
                total=progress.episodes_total or None,
                agent_steps=progress.agent_steps,
            )

        return run_evaluation(
            evaluation,
            ray_address=args.ray_address,
            on_progress=on_progress,
            metrics_port=args.metrics_port,
        )


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from swarm_arena.api.validation import ManifestError, load_and_validate
    from swarm_arena.arena.leaderboard_view import leaderboard_table, plot_leaderboard

    console = Console()
    try:
        evaluation = load_and_validate(args.file, check_imports=True)
    except ManifestError as exc:
        print(f"{args.file}: invalid; fix these and run again:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1

    from swarm_arena.arena.runner import EvaluationFailed

    try:
        report = _run_with_progress(evaluation, args)
    except EvaluationFailed as exc:
        print(f"{args.file}: evaluation failed: {exc}", file=sys.stderr)
        return 1
    method = evaluation.spec.rating.method.value
    console.print(leaderboard_table(report, rating_method=method))
    if args.output:
        Path(args.output).write_text(json.dumps(report.model_dump(by_alias=True, mode="json"), indent=2) + "\n")
        console.print(f"results written to {args.output}")
    if args.plot:
        plot_leaderboard(report, args.plot, rating_method=method)
        console.print(f"leaderboard plot written to {args.plot}")
    return 0


def _cmd_repair(args: argparse.Namespace) -> int:
    from swarm_arena.arena.recovery import EvaluationFailed, EvaluationNotRunning, request_repair

    evaluation = args.evaluation if "/" in args.evaluation else f"default/{args.evaluation}"
    began = time.monotonic()
    try:
        replaced = request_repair(evaluation, args.node_id or None, ray_address=args.ray_address)
    except (EvaluationNotRunning, ConnectionError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except EvaluationFailed as exc:
        print(f"{evaluation}: repair failed: {exc}", file=sys.stderr)
        return 1
    if args.json:  # for the operator, which submits this as a Ray job and reads its log
        print(json.dumps({"replaced": replaced, "seconds": round(time.monotonic() - began, 3)}))
    elif replaced:
        print("\n".join(replaced))
    else:
        print(f"{evaluation}: nothing to repair", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-arena",
        description="Declarative agent-swarm evaluations on Ray and Kubernetes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an evaluation on an embedded local Ray (or a given cluster)")
    run.add_argument("file", help="SwarmEvaluation manifest (YAML)")
    run.add_argument(
        "--ray-address",
        default=None,
        help="connect to this Ray cluster instead of starting one (`auto`, `ray://host:10001`, `host:6379`)",
    )
    run.add_argument("--output", "-o", default=None, help="write the results JSON here")
    run.add_argument("--plot", default=None, help="draw the leaderboard with its intervals into this PNG")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check manifests as the API server and the operator would")
    validate.add_argument("files", nargs="+", help="SwarmEvaluation manifests (YAML)")
    validate.add_argument(
        "--no-imports", action="store_true", help="skip resolving environment and policy factories"
    )
    validate.set_defaults(func=_cmd_validate)

    repair = sub.add_parser(
        "repair",
        help="restart, now, the named actors a running evaluation lost (instead of waiting for Ray's node-death detection)",
    )
    repair.add_argument("evaluation", help="NAMESPACE/NAME of the running evaluation (NAME alone: namespace default)")
    repair.add_argument(
        "--node-id",
        action="append",
        default=[],
        help="Ray node id known to be lost (repeatable); without it, every actor failing a 1 s ping is replaced",
    )
    repair.add_argument("--ray-address", default="auto", help="the Ray cluster running it (default: auto)")
    repair.add_argument(
        "--json", action="store_true", help='print one JSON line {"replaced": [names], "seconds": s} (for programs)'
    )
    repair.set_defaults(func=_cmd_repair)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinition generated from the models")
    crd.set_defaults(func=_cmd_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
