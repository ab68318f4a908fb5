{{/*
The chart name, or nameOverride.
*/}}
{{- define "kafkasend.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name,
followed by the chart name unless the release name already contains it.
Truncated so that suffixed names stay within 63 characters.
*/}}
{{- define "kafkasend.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "kafkasend.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "kafkasend.labels" -}}
helm.sh/chart: {{ include "kafkasend.chart" . }}
{{ include "kafkasend.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kafkasend
{{- end }}

{{/*
Labels selecting the operator pods.
*/}}
{{- define "kafkasend.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kafkasend.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount name.
*/}}
{{- define "kafkasend.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "kafkasend.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "kafkasend.image" -}}
{{- include "kafkasend.imageRef" .Values.image | replace "@APPVERSION@" .Chart.AppVersion }}
{{- end }}

{{/*
The portal worker image reference.
*/}}
{{- define "kafkasend.workerImage" -}}
{{- include "kafkasend.imageRef" .Values.workerImage | replace "@APPVERSION@" .Chart.AppVersion }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: repository@digest when a
digest is set, else repository:tag (@APPVERSION@ when the tag is empty).
*/}}
{{- define "kafkasend.imageRef" -}}
{{- if .digest }}
{{- printf "%s@%s" .repository .digest }}
{{- else }}
{{- printf "%s:%s" .repository (default "@APPVERSION@" .tag) }}
{{- end }}
{{- end }}

{{/*
Labels of the portal worker pods the operator creates
(controllers/resources.go).
*/}}
{{- define "kafkasend.workerSelectorLabels" -}}
app.kubernetes.io/name: kafkasend-portal
app.kubernetes.io/managed-by: kafkasend-operator
{{- end }}

{{/*
Namespace of the leader election Lease.
*/}}
{{- define "kafkasend.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}
