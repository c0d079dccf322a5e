{{/*
Names and labels shared by every object of the chart.
*/}}

{{- define "authgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's object name: <release>-authgate, or the release name alone
when it already contains the chart name. */}}
{{- define "authgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The metrics Service. Its name is Prometheus' job label, and the `up`
alerts of files/alerts.yaml match jobs containing "authgate". */}}
{{- define "authgate.metricsName" -}}
{{- $full := include "authgate.fullname" . }}
{{- if contains "authgate" $full }}
{{- printf "%s-metrics" $full | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-authgate-metrics" $full | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "authgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "authgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The gateway's pods: with the component, so that the migrate Job's pods
(component migrate) are never taken for them by a Service, the PDB or the
NetworkPolicy. */}}
{{- define "authgate.podSelectorLabels" -}}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/component: {{ include "authgate.podComponent" . }}
{{- end }}

{{- define "authgate.labels" -}}
helm.sh/chart: {{ include "authgate.chart" . }}
{{ include "authgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The pod's component: the CMS's pod with its gate, or the gateway alone. */}}
{{- define "authgate.podComponent" -}}
{{- if eq .Values.mode "sidecar" }}cms{{ else }}gateway{{ end }}
{{- end }}

{{- define "authgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "0.0.0.0:<port>" */}}
{{- define "authgate.listen" -}}
{{- printf "0.0.0.0:%d" (int .) }}
{{- end }}
