// Placeholder: built with -modfile=tests/controlplane/go/kube/go.mod (see ../test_crd_kube_validation.py).
module swarm-arena.local/tests/api/kubecheck

go 1.25.0
