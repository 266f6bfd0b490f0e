"""The operator runs as a uid with no passwd entry, as it does in its image.

The operator image runs `swarm-arena operator` as uid 65532, which `python:3.11-slim-bookworm`
has no /etc/passwd entry for (nor has any image under an arbitrary `runAsUser`, as OpenShift
assigns). kopf names its operator after `getpass.getuser()` unless told otherwise, and that raises
`KeyError: 'getpwuid(): uid not found'` there: the image crash-looped before its first event
(found by running the image built with `make images` against the test plane).
"""

from __future__ import annotations

import pwd

import pytest

from tests.operator.conftest import Evaluations, manifest

pytestmark = pytest.mark.controlplane

UID = 65532  # the operator image's user (images/operator.Dockerfile)


def test_the_operator_acts_as_a_uid_without_a_passwd_entry(control_plane, operator_factory, namespace) -> None:
    with pytest.raises(KeyError):
        pwd.getpwuid(UID)  # as in the image: no entry for it on this machine either
    op = operator_factory([namespace])
    op.user = UID
    op.start()  # waits for /healthz: kopf is up; a crash at start fails here with the operator's log
    evaluations = Evaluations(control_plane, namespace, op.tail)
    evaluations.apply(manifest("as-nobody", suspend=True))
    evaluations.wait_phase("as-nobody", "Suspended", timeout=60)
