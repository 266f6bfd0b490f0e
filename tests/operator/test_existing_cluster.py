"""The operator end to end on an existing Ray cluster (`cluster.address`): a real local Ray head
with its dashboard and token authentication, a real kube-apiserver, `swarm-arena operator` as a
process. The job path, the reporting channel and the lifecycle, with the numbers checked against
`swarm-arena run` of the same manifest and seed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from swarm_arena.controller import build_results
from tests.operator.conftest import Evaluations, manifest, run_locally

pytestmark = pytest.mark.controlplane


@pytest.fixture
def evals(control_plane, namespace, ray_head, operator_factory):
    op = operator_factory([namespace])
    op.approve(ray_head.dashboard, [namespace], ray_head.token)
    op.start()
    ev = Evaluations(control_plane, namespace, op.tail)
    ev.operator = op
    ev.head = ray_head
    return ev


def _board(stored: dict) -> list[dict]:
    """The ConfigMap's leaderboard rows with their separatedFrom (kept there as results.pairwise.separated)."""
    from swarm_arena.api.status import Results

    return Results.model_validate(stored).from_configmap().to_wire()["leaderboard"]


def _jobs_of(head, namespace: str, name: str) -> list[dict]:
    return [j for j in head.jobs() if (j.get("metadata") or {}).get("arena.swarm.dev/evaluation") == f"{namespace}/{name}"]


def _episodes(evals: Evaluations, name: str) -> list[int]:
    cm = evals.configmap(f"{name}-results")
    return [r.episode for r in build_results.episodes_from_configmap(cm)]


def test_runs_to_succeeded_with_the_same_numbers_as_swarm_arena_run(evals, tmp_path: Path) -> None:
    doc = manifest("duel", cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    status = evals.wait_phase("duel", "Succeeded", timeout=240)
    reference = run_locally(doc, tmp_path)

    assert status["progress"] == {"episodesCompleted": 4, "episodesTotal": 4,
                                  "agentSteps": reference["progress"]["agentSteps"], "summary": "4/4"}
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["results"]["resultsConfigMap"] == "duel-results"
    assert status["attempts"] == 1 and status["jobId"] and status["startTime"] and status["completionTime"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Complete"]["status"] == "True"
    assert all(c["observedGeneration"] == 1 for c in status["conditions"])
    assert status["observedGeneration"] == 1

    cm = evals.configmap("duel-results")
    document = json.loads(cm["data"]["results.json"])
    # In full there, with the pairwise matrix (where separatedFrom lives, as `separated`); never in status.
    stored = document["results"]
    assert document["final"] is True
    assert stored["leaderboard"] == [{**e, "separatedFrom": []} for e in reference["results"]["leaderboard"]]
    assert stored["pairwise"]["policies"] == [e["policy"] for e in reference["results"]["leaderboard"]]
    assert stored["returnAggregates"] and "pairwise" not in status["results"]
    assert sorted(_episodes(evals, "duel")) == [0, 1, 2, 3]
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "SwarmEvaluation"

    table = evals.cp.kubectl("get", "swe", "duel", "-n", evals.ns).stdout.splitlines()
    assert table[1].split()[:4] == ["duel", "Succeeded", "4/4", reference["results"]["leaderboard"][0]["policy"]]
    reasons = [e["reason"] for e in evals.events("duel")]
    assert "Running" in reasons and "Succeeded" in reasons
    assert len(_jobs_of(evals.head, evals.ns, "duel")) == 1
    metrics = evals.operator.metrics()
    assert 'swarm_arena_operator_job_submissions_total{outcome="ok"} 1.0' in metrics
    assert 'swarm_arena_operator_evaluations{phase="Succeeded"} 1.0' in metrics


def test_an_import_path_that_does_not_resolve_fails_once_naming_the_field(evals) -> None:
    doc = manifest("typo", cluster={"address": evals.head.dashboard})
    doc["spec"]["environment"]["factory"] = "swarm_arena_no_such_module:parallel_env"
    evals.apply(doc)
    status = evals.wait_phase("typo", "Failed", timeout=120)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.environment.factory" in failed["message"]
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "typo")) == 1


def test_operator_killed_mid_run_one_job_and_the_run_completes(evals) -> None:
    doc = manifest("restart", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("restart", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    evals.operator.kill(signal.SIGKILL)
    evals.operator.start()
    status = evals.wait_phase("restart", "Succeeded", timeout=300)
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "restart")) == 1
    assert sorted(_episodes(evals, "restart")) == list(range(6))


def test_suspend_then_unsuspend_counts_every_episode_once(evals, tmp_path: Path) -> None:
    doc = manifest("pause", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("pause", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    evals.patch("pause", {"suspend": True})
    suspended = evals.wait("pause", "suspended with the job stopped",
                           lambda s: s if s.get("phase") == "Suspended" and "jobId" not in s else None, timeout=120)
    first = _jobs_of(evals.head, evals.ns, "pause")
    assert [j["status"] for j in first] == ["STOPPED"]
    kept = sorted(_episodes(evals, "pause"))
    assert kept and len(kept) == suspended["progress"]["episodesCompleted"]

    evals.patch("pause", {"suspend": False})
    status = evals.wait_phase("pause", "Succeeded", timeout=300)
    assert status["attempts"] == 2
    assert sorted(_episodes(evals, "pause")) == list(range(6))
    reference = run_locally(doc, tmp_path)
    assert status["results"]["leaderboard"] == reference["results"]["leaderboard"]
    assert status["progress"]["agentSteps"] == reference["progress"]["agentSteps"]
    assert "Suspended" in [e["reason"] for e in evals.events("pause")]


def test_deadline_stops_the_job_and_fails(evals) -> None:
    doc = manifest("late", episodes=50, max_steps=400, agents=60, activeDeadlineSeconds=15,
                   cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    status = evals.wait_phase("late", "Failed", timeout=120)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    evals.wait("late", "the job stopped", lambda s: all(
        j["status"] in ("STOPPED", "FAILED") for j in _jobs_of(evals.head, evals.ns, "late")), timeout=60)


def test_delete_mid_run_stops_the_job_and_releases_the_finalizer(evals) -> None:
    doc = manifest("gone", episodes=50, max_steps=400, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("gone", "running", lambda s: s.get("phase") == "Running", timeout=120)
    evals.cp.kubectl("delete", "swe", "gone", "-n", evals.ns, "--wait=true", timeout=60)
    from tests.controlplane.plane import wait_for

    wait_for("the deleted evaluation's job stopped", lambda: all(
        j["status"] in ("STOPPED", "FAILED") for j in _jobs_of(evals.head, evals.ns, "gone")), 60)
    assert _jobs_of(evals.head, evals.ns, "gone")


def test_two_operators_one_acts_and_the_standby_takes_over(evals, operator_factory) -> None:
    import time

    from tests.controlplane.plane import wait_for

    standby = operator_factory([evals.ns])  # the same admin files (tokens, approved addresses)
    standby.start()  # healthy, but waiting for the Lease
    lease = json.loads(evals.cp.kubectl("get", "lease", "swarm-arena-operator", "-n", evals.ns, "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"].endswith(f"-{evals.operator.proc.pid}")

    doc = manifest("ha", episodes=6, max_steps=150, agents=60, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait("ha", "an episode counted",
               lambda s: (s.get("progress") or {}).get("episodesCompleted", 0) >= 1, timeout=180)
    killed = time.monotonic()
    evals.operator.kill(signal.SIGKILL)

    def standby_leads() -> bool:
        holder = json.loads(evals.cp.kubectl("get", "lease", "swarm-arena-operator", "-n", evals.ns, "-o",
                                             "json").stdout)["spec"]["holderIdentity"]
        return holder.endswith(f"-{standby.proc.pid}")

    wait_for("the standby holds the Lease", standby_leads, 60)
    print(f"standby took over {time.monotonic() - killed:.1f}s after the leader was killed")
    status = evals.wait_phase("ha", "Succeeded", timeout=300)
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "ha")) == 1
    assert sorted(_episodes(evals, "ha")) == list(range(6))


def test_the_results_configmap_keeps_every_policy_and_status_the_top_rows(evals) -> None:
    # spec.stopping cuts the plan of 3 at 2: Succeeded, with a StoppedEarly condition saying why.
    doc = manifest("crowd", episodes=3, stopping={"maxEpisodes": 2}, cluster={"address": evals.head.dashboard})
    doc["spec"]["policies"] = [{"name": f"p{i:02d}", "factory": ("greedy", "random", "noop")[i % 3]}
                               for i in range(12)]
    evals.apply(doc)
    status = evals.wait_phase("crowd", "Succeeded", timeout=240)
    from swarm_arena.controller.decide import STATUS_LEADERBOARD_ROWS

    document = json.loads(evals.configmap("crowd-results")["data"]["results.json"])
    full = _board(document["results"])
    assert sorted(row["policy"] for row in full) == [f"p{i:02d}" for i in range(12)]
    # Status's rows are the ConfigMap's first ones, exactly (separatedFrom from results.pairwise.separated).
    assert status["results"]["leaderboard"] == full[:STATUS_LEADERBOARD_ROWS]
    assert document["results"]["resultsConfigMap"] == "crowd-results" and document["final"] is True
    assert status["progress"]["summary"] == "2/3"
    early = {c["type"]: c for c in status["conditions"]}["StoppedEarly"]
    assert early["status"] == "True" and early["reason"] == "MaxEpisodes"
    assert "2 counted of 3 planned, 1 saved" in early["message"]
    assert status["results"]["stoppedEarly"]["episodesSaved"] == 1
    assert document["results"]["stoppedEarly"] == status["results"]["stoppedEarly"]


def _refuse_succeeded(evals: Evaluations) -> str:
    """A ValidatingAdmissionPolicy that refuses status writes saying Succeeded in this namespace
    (and the creation of `vap-probe`, to tell when it is in force): the API server fails the
    operator's status write after its results write."""
    name = f"refuse-succeeded-{evals.ns}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["arena.swarm.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                "resources": ["swarmevaluations", "swarmevaluations/status"]}]},
            "validations": [{"expression": "has(request.subResource) && request.subResource == 'status' ? "
                                           "!has(object.status) || !has(object.status.phase) || "
                                           "object.status.phase != 'Succeeded' : object.metadata.name != 'vap-probe'",
                             "message": "test: Succeeded refused"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": evals.ns}}}},
    }
    evals.cp.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                            "items": [policy, binding]}))
    probe = manifest("vap-probe", cluster={"address": evals.head.dashboard})
    from tests.controlplane.plane import wait_for

    wait_for("the admission policy in force", lambda: "test: Succeeded refused" in evals.cp.kubectl(
        "create", "--dry-run=server", "-n", evals.ns, "-f", "-", input=json.dumps(probe), check=False).stderr, 60)
    return name


def test_the_final_results_are_durable_before_the_phase_and_repaired_when_lost(evals) -> None:
    policy = _refuse_succeeded(evals)
    try:
        _final_before_phase(evals, policy)
    finally:
        evals.cp.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy,
                         "--ignore-not-found", check=False)


def _final_before_phase(evals: Evaluations, policy: str) -> None:
    doc = manifest("durable", cluster={"address": evals.head.dashboard})
    evals.apply(doc)

    def final_results():
        cm = evals.configmap("durable-results")
        return cm if build_results.is_final(cm) else None

    # The status write that says Succeeded is refused: the results are final already, the phase is not.
    from tests.controlplane.plane import wait_for

    cm = wait_for("the results ConfigMap final", final_results, 240, interval=0.5, on_timeout=evals.operator.tail)
    assert sorted(r.episode for r in build_results.episodes_from_configmap(cm)) == [0, 1, 2, 3]
    assert evals.status("durable").get("phase") != "Succeeded"

    # The operator dies between the two writes; a new one finishes the evaluation from the same job.
    evals.operator.kill(signal.SIGKILL)
    evals.cp.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", policy)
    evals.operator.start()  # its status write is refused until the deletion is in force: it retries
    status = evals.wait_phase("durable", "Succeeded", timeout=120)
    assert status["attempts"] == 1 and len(_jobs_of(evals.head, evals.ns, "durable")) == 1
    assert build_results.is_final(evals.configmap("durable-results"))
    stored = json.loads(evals.configmap("durable-results")["data"]["results.json"])["results"]
    leaderboard = stored["leaderboard"]
    assert _board(stored) == status["results"]["leaderboard"]  # one result: after the restart too

    # A finished evaluation whose ConfigMap is gone gets it back, final, from the job's files.
    evals.cp.kubectl("delete", "configmap", "durable-results", "-n", evals.ns)
    evals.operator.kill(signal.SIGKILL)
    evals.operator.start()
    cm = wait_for("the results ConfigMap written again", final_results, 120, interval=0.5,
                  on_timeout=evals.operator.tail)
    assert sorted(_episodes(evals, "durable")) == [0, 1, 2, 3]
    assert json.loads(cm["data"]["results.json"])["results"]["leaderboard"] == leaderboard
    assert "ResultsRepaired" in [e["reason"] for e in evals.events("durable")]
    assert len(_jobs_of(evals.head, evals.ns, "durable")) == 1


def test_recreated_under_the_same_name_waits_for_the_old_results_and_never_reads_them(evals) -> None:
    doc = manifest("again", cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    evals.wait_phase("again", "Succeeded", timeout=240)
    old_uid = evals.get("again")["metadata"]["uid"]
    # The garbage collector lags: a finalizer holds the old results ConfigMap while it is deleted.
    evals.cp.kubectl("patch", "configmap", "again-results", "-n", evals.ns, "--type=merge",
                     "-p", json.dumps({"metadata": {"finalizers": ["test.swarm.dev/hold"]}}))
    evals.cp.kubectl("delete", "swe", "again", "-n", evals.ns, "--wait=true", timeout=60)
    doc["spec"]["episodes"] = 2
    evals.apply(doc)
    new_uid = evals.get("again")["metadata"]["uid"]
    assert new_uid != old_uid
    waiting = evals.wait("again", "waiting for the old ConfigMap", lambda s: s if any(
        c["type"] == "ClusterReady" and c["reason"] == "WaitingForOldCluster" for c in s.get("conditions", [])) else None,
        timeout=120)
    assert waiting["phase"] == "Provisioning"
    message = next(c["message"] for c in waiting["conditions"] if c["type"] == "ClusterReady")
    assert "ConfigMap again-results" in message
    mine = [j for j in _jobs_of(evals.head, evals.ns, "again") if new_uid[:8] in j["submission_id"]]
    assert mine == [], mine  # nothing submitted while the old results could be read as its own

    evals.cp.kubectl("patch", "configmap", "again-results", "-n", evals.ns, "--type=merge",
                     "-p", json.dumps({"metadata": {"finalizers": None}}))
    status = evals.wait_phase("again", "Succeeded", timeout=240)
    assert status["progress"]["episodesCompleted"] == 2 and status["progress"]["episodesTotal"] == 2
    assert sorted(_episodes(evals, "again")) == [0, 1]  # its own two, none of the old four
    cm = evals.configmap("again-results")
    assert [o["uid"] for o in cm["metadata"]["ownerReferences"]] == [new_uid]


def test_created_suspended_it_has_no_start_and_its_spec_stays_editable_until_it_runs(evals) -> None:
    doc = manifest("later", episodes=4, suspend=True, cluster={"address": evals.head.dashboard})
    evals.apply(doc)
    suspended = evals.wait_phase("later", "Suspended", timeout=60)
    assert "startTime" not in suspended and "jobId" not in suspended
    assert suspended["dashboardURL"] == evals.head.dashboard and "rayClusterName" not in suspended
    evals.patch("later", {"episodes": 2})  # not started: the API server takes a spec edit
    evals.patch("later", {"suspend": False})
    status = evals.wait_phase("later", "Succeeded", timeout=240)
    assert status["startTime"] and status["progress"]["episodesTotal"] == 2 and status["attempts"] == 1
    assert not status.get("suspendedSeconds")  # it was never suspended after it started
    refused = evals.cp.kubectl("patch", "swe", "later", "-n", evals.ns, "--type=merge",
                               "-p", json.dumps({"spec": {"episodes": 3}}), check=False)
    assert refused.returncode != 0 and "spec.episodes cannot change once the evaluation has started" in refused.stderr


def test_a_plan_too_big_to_keep_without_a_store_fails_before_it_runs_naming_the_fields(evals) -> None:
    # Records of 20,000 episodes of 8 policies fit in the sharded ConfigMaps; 56 round-robin
    # pairings of them (1,120,000 episodes) do not.
    doc = manifest("huge", episodes=20_000, cluster={"address": evals.head.dashboard},
                   policies=[{"name": f"p{i}", "factory": "random"} for i in range(8)],
                   matchmaking={"mode": "round-robin"},
                   teams=[{"name": "red", "agents": "red_*"}, {"name": "blue", "agents": "blue_*"}])
    evals.apply(doc)
    status = evals.wait_phase("huge", "Failed", timeout=60)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec", failed
    assert failed["message"].startswith("spec.episodes: 1120000 planned episodes (20000 × 56 pairings)"), failed
    assert "spec.checkpoint.storageURI" in failed["message"]
    assert _jobs_of(evals.head, evals.ns, "huge") == [] and "jobId" not in status


class _DashboardProxy:
    """The Ray dashboard behind a proxy that stops one request at one step of a submission,
    so the operator can be killed exactly there (or the POST fails): `gates` maps a step to
    `(method, path-or-submission-id, when)`, each fired once."""

    def __init__(self, upstream: str) -> None:
        import queue
        import threading
        import urllib.error
        import urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream
        self.gates: dict[str, tuple] = {}
        self.fired: queue.Queue = queue.Queue()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sid = json.loads(body).get("submission_id") if self.command == "POST" and body else None
                step = proxy._gate(self.command, self.path, sid, None)
                if step == "fail":
                    return self._answer(503, b'{"error": "test: the POST failed"}')
                if step is not None:
                    return self._hold(step)
                req = urllib.request.Request(proxy.upstream + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("authorization", "content-type")})
                try:
                    with urllib.request.urlopen(req, timeout=60) as r:
                        code, text = r.status, r.read()
                except urllib.error.HTTPError as exc:
                    code, text = exc.code, exc.read()
                step = proxy._gate(self.command, self.path, sid, text)
                if step is not None:
                    return self._hold(step)
                self._answer(code, text)

            def _hold(self, step: str) -> None:
                proxy.fired.put(step)
                proxy.release.wait(120)  # the operator is killed meanwhile; nothing is answered
                self.close_connection = True

            def _answer(self, code: int, text: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = _any  # noqa: N815 - http.server's names

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()

    def _gate(self, method: str, path: str, sid: str | None, response: bytes | None) -> str | None:
        with self._lock:
            for step, (want_method, what, when) in list(self.gates.items()):
                if method != want_method or (when == "response") != (response is not None):
                    continue
                if method == "POST" and sid != what or method == "GET" and path != f"/api/jobs/{what}":
                    continue
                if method == "GET" and json.loads(response).get("status") != "FAILED":
                    continue
                del self.gates[step]
                return "fail" if step == "failed-post" else step
        return None

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def test_a_resubmission_interrupted_at_each_step_runs_one_job_per_attempt(evals, tmp_path: Path) -> None:
    """Attempt 1 fails (the flaky policy); the re-submission of attempt 2, from Running, is cut at
    each step: the operator killed before it records the id (while it reads attempt 1's FAILED),
    after recording it and before the POST, after the POST before status says Running; and a POST
    that fails. Each evaluation ends Succeeded with the uninterrupted leaderboard and exactly one
    Ray job per attempt: never a head-loss re-submission, never attempt 3."""
    from swarm_arena.controller import names
    from tests.controlplane.plane import wait_for

    proxy = _DashboardProxy(evals.head.dashboard)
    evals.operator.approve(proxy.url, [evals.ns], evals.head.token)
    steps = {"before-record": ("GET", 1, "response"), "before-post": ("POST", 2, "request"),
             "after-post": ("POST", 2, "response"), "failed-post": ("POST", 2, "request")}
    docs = {}
    try:
        for step, (method, attempt, when) in steps.items():
            doc = manifest(f"cut-{step}", episodes=4, backoffLimit=2, cluster={"address": proxy.url})
            doc["spec"]["policies"][1]["factory"] = "tests.operator.flaky_policy:FlakyPolicy"
            evals.apply(doc)
            uid = evals.get(doc["metadata"]["name"])["metadata"]["uid"]
            proxy.gates[step] = (method, names.submission_id(uid, attempt), when)
            docs[step] = doc
        # Several steps can be held at once (one operator serves every evaluation): one kill then
        # cuts each at its step. The failed POST is answered 503 and holds nothing.
        held: set[str] = set()
        while len(held) < 3:
            step = wait_for("the next submission step reached", lambda: None if proxy.fired.empty() else
                            proxy.fired.get(), 420, interval=0.2, on_timeout=evals.operator.tail)
            held.add(step)
            evals.operator.kill(signal.SIGKILL)  # while its request is held: exactly at that step
            proxy.release.set()
            proxy.release.clear()
            evals.operator.start()
        assert held == {"before-record", "before-post", "after-post"}
        wait_for("the failed POST answered", lambda: "failed-post" not in proxy.gates, 420,
                 on_timeout=evals.operator.tail)
        plain = json.loads(json.dumps(docs["failed-post"]))
        plain["spec"]["policies"][1]["factory"] = "random"  # what FlakyPolicy plays when it does not fail
        reference = run_locally(plain, tmp_path)
        seen, wanted = {}, {}
        for step, doc in docs.items():
            name = doc["metadata"]["name"]
            status = evals.wait_phase(name, "Succeeded", timeout=420)
            jobs = sorted(_jobs_of(evals.head, evals.ns, name), key=lambda j: j["metadata"]["arena.swarm.dev/attempt"])
            seen[step] = {"jobs": [(j["metadata"]["arena.swarm.dev/attempt"], j["status"]) for j in jobs],
                          "attempts": status["attempts"], "failures": status.get("failures"),
                          "headRestarts": status.get("headRestarts"), "jobAccepted": status.get("jobAccepted"),
                          "leaderboard": status["results"]["leaderboard"] == reference["results"]["leaderboard"],
                          "episodes": sorted(_episodes(evals, name))}
            wanted[step] = {"jobs": [("1", "FAILED"), ("2", "SUCCEEDED")], "attempts": 2, "failures": 1,
                            "headRestarts": None, "jobAccepted": True, "leaderboard": True, "episodes": [0, 1, 2, 3]}
        assert seen == wanted
        resubmitted = [e for e in evals.events("cut-failed-post") if e["reason"] == "Resubmitting"]
        assert resubmitted and resubmitted[0]["type"] == "Warning"
        assert "attempt 1 failed (1 of at most 3)" in resubmitted[0]["message"]
    finally:
        proxy.close()
