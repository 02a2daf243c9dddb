{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "phoenix-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name: the release name, unless it already contains the chart name. */}}
{{- define "phoenix-operator.fullname" -}}
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

{{- define "phoenix-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phoenix-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "phoenix-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "phoenix-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: phoenix
{{- end -}}

{{- define "phoenix-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "phoenix-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "phoenix-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The namespaces the operator serves: operator.watchNamespaces, else the release namespace (empty when
operator.watchAllNamespaces). One name per line; templates split it. Both set is a mistake: fail.
*/}}
{{- define "phoenix-operator.watchNamespaces" -}}
{{- if and .Values.operator.watchAllNamespaces .Values.operator.watchNamespaces -}}
{{- fail "operator.watchAllNamespaces and operator.watchNamespaces exclude each other: name the namespaces, or set watchAllNamespaces=true (cluster-wide, every Secret) and no list" -}}
{{- end -}}
{{- if not .Values.operator.watchAllNamespaces -}}
{{- join "\n" (default (list .Release.Namespace) .Values.operator.watchNamespaces) -}}
{{- end -}}
{{- end -}}
