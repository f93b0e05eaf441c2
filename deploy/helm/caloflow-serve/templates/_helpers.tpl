{{/* The release's base name: <release>-caloflow-serve, or fullnameOverride. */}}
{{- define "caloflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The servers' Deployment and headless Service. */}}
{{- define "caloflow.serverName" -}}
{{- include "caloflow.fullname" . -}}
{{- end -}}

{{- define "caloflow.envoyName" -}}
{{- printf "%s-envoy" (include "caloflow.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "caloflow.labels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "caloflow.selector" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The in-cluster DNS name of the headless Service: one A record per ready server pod. */}}
{{- define "caloflow.serverHost" -}}
{{- printf "%s.%s.svc.%s" (include "caloflow.serverName" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* drain grace + drain timeout + 10 s for gRPC to close and the process to exit. */}}
{{- define "caloflow.terminationGrace" -}}
{{- add .Values.server.drain.graceSeconds .Values.server.drain.timeoutSeconds 10 -}}
{{- end -}}

{{/* PromQL label matchers selecting this release's servers (as scraped via the ServiceMonitor or scrape config). */}}
{{- define "caloflow.promSelector" -}}
{{- printf "namespace=\"%s\",service=\"%s\"" .Release.Namespace (include "caloflow.serverName" .) -}}
{{- end -}}

{{/* The KEDA trigger's query. */}}
{{- define "caloflow.scalingQuery" -}}
{{- $sel := include "caloflow.promSelector" . -}}
{{- if .Values.keda.customQuery -}}
{{- .Values.keda.customQuery -}}
{{- else if eq .Values.keda.trigger "queueTime" -}}
{{- printf "sum(rate(nv_inference_queue_duration_us{%s}[30s])) / (sum(rate(nv_inference_exec_count{%s}[30s])) * 1000 + 0.001)" $sel $sel -}}
{{- else -}}
{{- printf "sum(calo_pending_showers{%s})" $sel -}}
{{- end -}}
{{- end -}}
