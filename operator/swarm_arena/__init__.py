"""swarm-arena: declarative agent-swarm evaluations on Ray and Kubernetes."""

__version__ = "0.1.0"
