"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok (fake nodes) and the KubeRay operator, built from Go modules.

See docs/testing-controlplane.md.
"""
