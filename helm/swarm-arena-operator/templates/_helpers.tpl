{{/* Names: <release>-swarm-arena-operator, shortened when the release name already says it. */}}
{{- define "swarm-arena.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "swarm-arena.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "swarm-arena.labels" -}}
{{ include "swarm-arena.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: swarm-arena
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "swarm-arena.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "swarm-arena.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: set the name of an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "swarm-arena.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaced rules, shared by the cluster-wide ClusterRole and the per-namespace Roles.
Exactly the requests the operator makes: tests/packaging/test_chart_operator.py compares them with
the API server's audit log of an evaluation run with this ServiceAccount's token. */}}
{{- define "swarm-arena.namespacedRules" -}}
# SwarmEvaluations: listed and watched (kopf); patched for kopf's finalizer and progress
# annotations. The operator never writes spec (GitOps tools own it), so no create/update/delete.
- apiGroups: [arena.swarm.dev]
  resources: [swarmevaluations]
  verbs: [list, watch, patch]
# Status: phase, conditions, progress and results, merge-patched through the status subresource.
- apiGroups: [arena.swarm.dev]
  resources: [swarmevaluations/status]
  verbs: [patch]
# RayClusters: the Ray cluster of each evaluation, created once (never re-applied), watched,
# deleted on suspend, ttlSecondsAfterFinished and evaluation deletion; read only when a create
# answers 409, to see whose it is (an earlier evaluation's of the same name is waited for, never
# adopted). Who may create RayClusters may run any pod (docs/concepts.md): this grant is as strong
# as creating pods.
- apiGroups: [ray.io]
  resources: [rayclusters]
  verbs: [list, watch, create, delete, get]
# ConfigMaps: the full results of each evaluation (owned by it, garbage-collected with it):
# server-side applied as the run goes (an apply that makes the object needs create as well as
# patch), read back when the operator restarts.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
# Events: what happened to an evaluation, in `kubectl describe` (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Secrets: the Ray auth token Secret of each cluster (KubeRay mounts it into the Ray pods).
# Create only: the token is derived from the operator's key, so it is never read back; its name
# carries the evaluation's uid, so an earlier evaluation's of the same name never collides with it.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
# Pods: the Ray pods of each cluster are watched to notice a lost worker or head at once.
{{- if .Values.rbac.podDelete }}
# Delete: after a lost head is replaced, a worker pod that the new head's Ray cluster does not
# know (the old head left it behind; KubeRay #1141) is deleted so that KubeRay makes one that
# joins (rbac.podDelete).
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, delete]
{{- else }}
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{- define "swarm-arena.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "swarm-arena.fullname" .)) .Values.rayAuth.existingSecret -}}
{{- end -}}
