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


# Exit codes (docs/cli.md): 0 done; 1 the command ran and what it checked or ran failed (an
# invalid manifest, a failed evaluation, a repair that could not be made); 2 the command line
# itself is wrong (argparse); 130 interrupted (Ctrl-C).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FORMATS = ("json", "yaml")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from swarm_arena.api.spec import RAY_VERSION

    try:
        mine = version("swarm-arena")
    except PackageNotFoundError:  # a source tree without an install
        mine = "0.0.0"
    return f"swarm-arena {mine} (Ray {RAY_VERSION})"


def _print_data(data: object, fmt: str) -> None:
    """Data for programs on stdout: `-o json` (one document) or `-o yaml`."""
    if fmt == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, width=120))


def _current_namespace() -> str:
    """The namespace of the kubeconfig's current context (as kubectl uses it), else `default`."""
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts()
    except Exception:  # noqa: BLE001 - no kubeconfig (e.g. inside a Ray job): kubectl's default too
        return "default"
    return (active or {}).get("context", {}).get("namespace") or "default"


def _cmd_crd(args: argparse.Namespace) -> int:
    from swarm_arena.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from swarm_arena.api.validation import ManifestError, load_and_validate

    failed = 0
    results = []
    for path in args.files:
        try:
            load_and_validate(path, check_imports=not args.no_imports)
        except ManifestError as exc:
            failed += 1
            results.append({"file": path, "valid": False, "problems": [str(p) for p in exc.problems]})
            if not args.output:
                print(f"{path}: invalid", file=sys.stderr)
                for problem in exc.problems:
                    print(f"  {problem}", file=sys.stderr)
        else:
            results.append({"file": path, "valid": True, "problems": []})
            if not args.output:
                print(f"{path}: valid")
    if args.output:
        _print_data(results, args.output)
    return EXIT_FAILED if failed else EXIT_OK


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

    if args.record:
        evaluation = _recording_into(evaluation, args.record)
    try:
        report = _run_with_progress(evaluation, args)
    except EvaluationFailed as exc:
        print(f"{args.file}: evaluation failed: {exc}", file=sys.stderr)
        return 1
    method = evaluation.spec.rating_method.value
    data = report.model_dump(by_alias=True, mode="json")
    if args.output in FORMATS:  # the results on stdout, for programs; the rest goes to stderr
        console = Console(stderr=True)
        _print_data(data, args.output)
    else:
        console.print(leaderboard_table(report, rating_method=method))
    early = report.results.stopped_early
    if early is not None:
        console.print(f"stopped early ({early.reason}): {early.message}")
    if args.output and args.output not in FORMATS:
        Path(args.output).write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"results written to {args.output}")
    if args.plot:
        plot_leaderboard(report, args.plot, rating_method=method)
        console.print(f"leaderboard plot written to {args.plot}")
    if report.results.recordings is not None:
        console.print(f"recorded episodes {report.results.recordings.episodes} in {report.results.recordings.uri}")
    return 0


def _recording_into(evaluation, folder: str):  # noqa: ANN001, ANN202 - SwarmEvaluation in, SwarmEvaluation out
    """`run --record DIR`: the manifest's spec.recording (every episode when it has none), into DIR."""
    from swarm_arena.api.spec import RecordingSpec

    recording = evaluation.spec.recording or RecordingSpec()
    recording = recording.model_copy(update={"storage_uri": f"file://{Path(folder).resolve()}"})
    spec = evaluation.spec.model_copy(update={"recording": recording})
    return evaluation.model_copy(update={"spec": spec})


def _cmd_repair(args: argparse.Namespace) -> int:
    from swarm_arena.arena.recovery import EvaluationFailed, EvaluationNotRunning, RepairTimedOut, request_repair

    if "/" in args.evaluation and args.namespace:
        print(f"give the namespace once: {args.evaluation!r} or -n {args.namespace}", file=sys.stderr)
        return EXIT_USAGE
    namespace = args.namespace or ("" if "/" in args.evaluation else _current_namespace())
    evaluation = args.evaluation if "/" in args.evaluation else f"{namespace}/{args.evaluation}"
    began = time.monotonic()
    try:
        replaced = request_repair(evaluation, args.node_id or None, ray_address=args.ray_address, timeout=args.timeout)
    except (EvaluationNotRunning, ConnectionError, RepairTimedOut) as exc:
        print(exc, file=sys.stderr)
        return 1
    except EvaluationFailed as exc:
        print(f"{evaluation}: repair failed: {exc}", file=sys.stderr)
        return 1
    result = {"replaced": replaced, "seconds": round(time.monotonic() - began, 3)}
    if args.json_line:  # the operator submits this as a Ray job and reads one line of its log
        print(json.dumps(result))
    elif args.output:
        _print_data({"evaluation": evaluation, **result}, args.output)
    elif replaced:
        print("\n".join(replaced))
    else:
        print(f"{evaluation}: nothing to repair", file=sys.stderr)
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from rich.console import Console

    from swarm_arena.arena import results_view

    try:
        if args.file:
            doc = results_view.from_json(Path(args.file).read_text(), args.file)
        else:
            if not args.evaluation:
                print("results: name an evaluation (NAMESPACE/NAME) or give --file", file=sys.stderr)
                return 2
            namespace, _, name = args.evaluation.rpartition("/")
            doc = results_view.read_configmap(namespace or "default", name)
        if args.marl_eval:
            Path(args.marl_eval).write_text(json.dumps(results_view.marl_eval(doc), indent=1) + "\n")
    except (OSError, ValueError) as exc:
        print(f"results: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the Kubernetes client's errors: no kubeconfig, 404, 403
        print(f"results: could not read the results of {args.evaluation}: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        sys.stdout.write(json.dumps(results_view.as_data(doc), indent=1) + "\n")
    elif args.output == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(results_view.as_data(doc), sort_keys=False, width=120))
    elif args.output == "csv":
        sys.stdout.write(results_view.as_csv(doc, args.section))
    else:
        console = Console()
        for table in results_view.tables(doc):
            console.print(table)
    if args.plot:
        results_view.plot(doc, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.marl_eval:
        print(f"marl-eval JSON written to {args.marl_eval}", file=sys.stderr)
    return 0


def _is_recording(where: str) -> bool:
    return "://" in where or Path(where).is_dir()


def _cmd_render_recording(args: argparse.Namespace) -> int:
    from swarm_arena.arena.recording.render import render_episode
    from swarm_arena.arena.recording.replay import Recording

    try:
        recording = Recording(args.file)
        episode = args.episode if args.episode is not None else (recording.episodes() or [0])[0]
        out = Path(args.video or f"episode-{episode}.gif")
        count = render_episode(recording, episode, out, fps=args.fps, every=args.every)
    except (OSError, ValueError, ImportError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"episode {episode}: {count} frames written to {out}", file=sys.stderr)
    return EXIT_OK


def _cmd_render(args: argparse.Namespace) -> int:
    if _is_recording(args.file):
        return _cmd_render_recording(args)
    import yaml

    from swarm_arena.api.validation import ManifestError, load_and_validate
    from swarm_arena.controller.render import render_children

    try:
        evaluation = load_and_validate(args.file, check_imports=False)
    except ManifestError as exc:
        print(f"{args.file}: invalid; fix these and run again:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    children = render_children(evaluation)
    if args.output == "json":  # a kubectl List, for programs
        _print_data({"apiVersion": "v1", "kind": "List", "items": [doc for _, doc in children]}, "json")
        return EXIT_OK
    for title, doc in children:
        sys.stdout.write(f"---\n# {title}\n")
        sys.stdout.write(yaml.safe_dump(doc, sort_keys=False, width=120))
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    from swarm_arena.arena.recording.replay import Recording, replay_episode

    try:
        recording = Recording(args.recording)
        episodes = args.episode or recording.episodes()
        if not episodes:
            print(f"replay: {args.recording} holds no recorded episode yet", file=sys.stderr)
            return EXIT_FAILED
        env = recording.make_env()
    except (OSError, ValueError, ImportError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = 0
    try:
        for episode in episodes:
            try:
                replay = replay_episode(recording, episode, env)
            except ValueError as exc:
                print(f"replay: {exc}", file=sys.stderr)
                failed += 1
                continue
            if replay.exact:
                print(f"episode {episode}: {replay.steps} steps, every step and return as recorded")
            else:
                failed += 1
                print(f"episode {episode}: the environment is not deterministic given its seed and actions: "
                      f"{replay.divergence}")  # fmt: skip
    finally:
        env.close()
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_operator(args: argparse.Namespace) -> int:
    from swarm_arena.controller.main import run

    return run(
        namespaces=[] if args.all_namespaces else args.namespace,
        liveness_port=args.liveness_port or None,
        metrics_port=args.metrics_port or None,
        log_format=args.log_format,
        dashboard_via=args.dashboard_via,
        poll_s=args.poll_seconds,
        ray_auth_key_file=args.ray_auth_key_file,
        ray_tokens_dir=args.ray_tokens_dir,
        cluster_addresses_file=args.cluster_addresses_file,
        verbose=args.verbose,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        ray_image_repository=args.ray_image_repository,
        ray_image_pull_secrets=args.ray_image_pull_secret,
        watch_nodes=args.watch_nodes,
        delete_pods=args.delete_pods,
        lease_name=args.lease_name,
        results_shard_kib=args.results_shard_kib,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-arena",
        description="Declarative agent-swarm evaluations on Ray and Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an evaluation on an embedded local Ray (or a given cluster)")
    run.add_argument("file", help="SwarmEvaluation manifest (YAML)")
    run.add_argument(
        "--ray-address",
        default=None,
        help="connect to this Ray cluster instead of starting one (`auto`, `ray://host:10001`, `host:6379`)",
    )
    run.add_argument(
        "--output", "-o", default=None, metavar="json|yaml|FILE",
        help="`json` or `yaml`: print the results to stdout in that format instead of the table; "
        "anything else: write the results JSON to that file",
    )
    run.add_argument("--plot", default=None, help="draw the leaderboard with its intervals into this PNG")
    run.add_argument("--record", metavar="DIR", default=None,
                     help="record into this local folder what spec.recording picks (every episode when the manifest "
                          "has no spec.recording); docs/recording.md")
    run.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check manifests as the API server and the operator would")
    validate.add_argument("files", nargs="+", help="SwarmEvaluation manifests (YAML)")
    validate.add_argument(
        "--no-imports", action="store_true", help="skip resolving environment and policy factories"
    )
    validate.add_argument("--output", "-o", choices=FORMATS, default=None,
                          help="print every file's result ({file, valid, problems}) in this format")
    validate.set_defaults(func=_cmd_validate)

    repair = sub.add_parser(
        "repair",
        help="restart, now, the named actors a running evaluation lost (instead of waiting for Ray's node-death detection)",
    )
    repair.add_argument("evaluation", help="NAME (in -n's namespace) or NAMESPACE/NAME of the running evaluation")
    repair.add_argument("--namespace", "-n", default=None,
                        help="namespace of the evaluation (default: the kubeconfig context's, else default)")
    repair.add_argument(
        "--node-id",
        action="append",
        default=[],
        help="Ray node id known to be lost (repeatable); without it, every actor Ray reports dead (or that is silent on a node Ray reports dead) is replaced, never a busy one",
    )
    repair.add_argument("--ray-address", default="auto", help="the Ray cluster running it (default: auto)")
    repair.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the coordinator's answer (default: 120)"
    )
    repair.add_argument("--output", "-o", choices=FORMATS, default=None,
                        help="print {evaluation, replaced, seconds} in this format")
    repair.add_argument(  # what the operator's repair job runs: one JSON line in its log
        "--json", action="store_true", dest="json_line", help=argparse.SUPPRESS
    )
    repair.set_defaults(func=_cmd_repair)

    results = sub.add_parser(
        "results", help="show an evaluation's leaderboard, pairwise matrix, return aggregates and social outcomes"
    )
    results.add_argument("evaluation", nargs="?", help="NAMESPACE/NAME: read its results ConfigMap (kubeconfig)")
    results.add_argument("--file", "-f", default=None,
                         help="a results.json (from the ConfigMap) or a `swarm-arena run --output` file instead")
    results.add_argument("--output", "-o", choices=("table", "json", "yaml", "csv"), default="table",
                         help="how to print (default: table)")
    results.add_argument("--section", choices=("leaderboard", "pairwise", "aggregates", "populations", "social"),
                         default="leaderboard",
                         help="which table -o csv prints (default: leaderboard)")
    results.add_argument("--plot", default=None, help="draw the leaderboard and the win-probability heatmap (PNG)")
    results.add_argument("--marl-eval", default=None, help="also write the per-episode returns in marl-eval's JSON")
    results.set_defaults(func=_cmd_results)

    render = sub.add_parser(
        "render", help="print the children the operator would create for a manifest (RayCluster, job submission, ...), "
        "or draw a recorded episode as a gif / mp4",
    )
    render.add_argument("file", help="SwarmEvaluation manifest (YAML), or a recording's folder (path, file://, s3://)")
    render.add_argument("--output", "-o", choices=FORMATS, default="yaml",
                        help="manifest: yaml (default; each document titled) or json (a kubectl List)")
    render.add_argument("--episode", "-e", type=int, default=None,
                        help="recording: the episode to draw (default: the first recorded)")
    render.add_argument("--video", default=None, help="recording: the file to write, .gif or .mp4 (default: episode-N.gif)")
    render.add_argument("--fps", type=int, default=10, help="recording: frames per second (default 10)")
    render.add_argument("--every", type=int, default=1, help="recording: draw every k-th step (default 1)")
    render.set_defaults(func=_cmd_render)

    replay = sub.add_parser(
        "replay", help="re-step a recording's environment from its seeds and actions; check the returns"
    )
    replay.add_argument("recording", help="the recording's folder (status.results.recordings.uri): path, file://, s3://")
    replay.add_argument("--episode", "-e", type=int, action="append", default=None,
                        help="an episode index to replay (repeat for several; default: every recorded one)")
    replay.set_defaults(func=_cmd_replay)

    op = sub.add_parser("operator", help="run the Kubernetes operator (kopf) for SwarmEvaluations")
    scope = op.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    op.add_argument("--liveness-port", type=int, default=8080, help="serve GET /healthz here (0: off)")
    op.add_argument("--metrics-port", type=int, default=9090, help="serve Prometheus /metrics here (0: off)")
    op.add_argument("--log-format", choices=("json", "text"), default="json", help="log line format")
    op.add_argument(
        "--dashboard-via", choices=("service", "pod-ip"), default="service",
        help="reach Ray dashboards by the head Service's DNS name (in the cluster) or the head pod's IP "
        "(an operator outside the cluster on a network that reaches pods)",
    )
    op.add_argument("--poll-seconds", type=float, default=2.0, help="how often a running job is polled")
    op.add_argument("--results-shard-kib", type=int, default=960, choices=range(4, 961), metavar="4..960",
                    help="compressed episode records one results ConfigMap holds at most (lower it where the "
                         "API server or etcd takes objects smaller than 1 MiB)")
    op.add_argument(
        "--ray-auth-key-file", default=None,
        help="key the per-cluster Ray tokens are derived from (default: $SWARM_ARENA_RAY_AUTH_KEY, else random)",
    )
    op.add_argument(
        "--ray-tokens-dir", default=None,
        help="tokens of existing Ray clusters (cluster.address): the files --cluster-addresses-file names",
    )
    op.add_argument(
        "--cluster-addresses-file", default=None,
        help="YAML of the existing Ray clusters evaluations may name by cluster.address: "
        "`clusters: [{address, namespaces: [...], tokenFile}]`; without it every cluster.address is refused",
    )
    op.add_argument(
        "--ray-image-repository", default=None,
        help="repository of the default Ray image, e.g. a mirror in your registry (the tag stays "
        "<version>-ray<rayVersion>; an evaluation's cluster.image overrides it)",
    )
    op.add_argument(
        "--ray-image-pull-secret", action="append", default=[], metavar="NAME",
        help="Secret every Ray pod pulls its image with, in the evaluation's namespace (repeatable)",
    )
    op.add_argument(
        "--watch-nodes", action=argparse.BooleanOptionalAction, default=True,
        help="watch Nodes to notice a lost node before Ray does (needs get/list/watch on nodes, cluster-wide)",
    )
    op.add_argument(
        "--delete-pods", action=argparse.BooleanOptionalAction, default=True,
        help="delete a worker pod a replaced Ray head left behind (KubeRay #1141); without it an event asks you to",
    )
    op.add_argument(
        "--leader-election", action=argparse.BooleanOptionalAction, default=True,
        help="act only while holding the Lease --lease-name (a second process is a hot standby)",
    )
    op.add_argument("--lease-name", default="swarm-arena-operator",
                    help="name of the Lease (the chart passes the release name: two releases never share one)")
    op.add_argument("--lease-namespace", default=None,
                    help="namespace of the Lease (default: $POD_NAMESPACE, else the first --namespace, else default)")
    op.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    op.set_defaults(func=_cmd_operator)

    crd = sub.add_parser("crd", help="print the CustomResourceDefinition generated from the models")
    crd.set_defaults(func=_cmd_crd)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
