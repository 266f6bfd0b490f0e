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

{{/* The namespaced rules, shared by the cluster-wide ClusterRole and the per-namespace Roles. */}}
{{- define "swarm-arena.namespacedRules" -}}
# SwarmEvaluations: watched for every change; patched for kopf's finalizer and progress annotations.
# The operator never writes spec (GitOps tools own it), so no update/create/delete.
- apiGroups: [arena.swarm.dev]
  resources: [swarmevaluations]
  verbs: [get, list, watch, patch]
# Status: phase, conditions, progress and results are written through the status subresource.
- apiGroups: [arena.swarm.dev]
  resources: [swarmevaluations/status]
  verbs: [get, patch, update]
# RayClusters: the Ray cluster of each evaluation, created/converged by server-side apply,
# deleted on suspend, ttlSecondsAfterFinished and evaluation deletion.
- apiGroups: [ray.io]
  resources: [rayclusters]
  verbs: [get, list, watch, create, patch, update, delete]
# ConfigMaps: the full results of each evaluation (owned by it, garbage-collected with it).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, update, delete]
# Events: what happened to an evaluation, in `kubectl describe` (core and events.k8s.io APIs).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# (the same Events through the newer events.k8s.io API)
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
# Secrets: the Ray auth token Secret of each cluster (KubeRay mounts it into the Ray pods).
# Create only: the token is derived from the operator's key, so it is never read back.
- apiGroups: [""]
  resources: [secrets]
  verbs: [create]
# Pods: the Ray pods of each cluster are watched to notice a lost worker or head at once.
# Delete: after a lost head is replaced, a worker pod that the new head's Ray cluster does not
# know (the old head left it behind; KubeRay #1141) is deleted so that KubeRay makes one that joins.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, delete]
{{- end -}}

{{- define "swarm-arena.rayAuthSecret" -}}
{{- default (printf "%s-ray-auth" (include "swarm-arena.fullname" .)) .Values.rayAuth.existingSecret -}}
{{- end -}}
