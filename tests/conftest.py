"""Fixtures shared by every test group.

The control plane (real etcd, kube-apiserver, controller-manager, scheduler, kwok and the KubeRay
operator, built from Go modules) is a session fixture from tests/controlplane; a test that
needs it asks for `control_plane` or `namespace`.
"""

pytest_plugins = ["tests.controlplane.pytest_plugin"]
