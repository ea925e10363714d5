{{/*
Object names are fixed, as in manifests/promoter: the promoter finds its Leases
(kropipe-promoter, kropipe-promoter-shard-<n>, ...), its state ConfigMaps and the Secret
kropipe-promoter-peer by these names, and the Role grants exactly them. One release per
namespace.
*/}}

{{/* Labels of every object: the kustomize install's two, and Helm's. */}}
{{- define "kropipe.labels" -}}
app.kubernetes.io/name: kropipe-promoter
app.kubernetes.io/part-of: kropipe
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The selector of the pods: the kustomize install's, so a Deployment it made can be adopted. */}}
{{- define "kropipe.selectorLabels" -}}
app.kubernetes.io/name: kropipe-promoter
{{- end }}

{{- define "kropipe.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The namespaces whose Applications the promoter reads. */}}
{{- define "kropipe.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{ join "," .Values.watchNamespaces }}
{{- else -}}
{{ .Release.Namespace }}
{{- end -}}
{{- end }}

{{/* The port of api.addr ("127.0.0.1:8080" → 8080). */}}
{{- define "kropipe.apiPort" -}}
{{ regexReplaceAll "^.*:" .Values.api.addr "" }}
{{- end }}

{{/* Whether api.addr is on loopback, where no token is needed. */}}
{{- define "kropipe.apiLoopback" -}}
{{- if or (hasPrefix "127." .Values.api.addr) (hasPrefix "localhost:" .Values.api.addr) (hasPrefix "[::1]:" .Values.api.addr) -}}
true
{{- end -}}
{{- end }}

{{/* The data of a Secret with a random key, kept across upgrades (lookup finds the live one). */}}
{{- define "kropipe.randomSecretData" -}}
{{- $live := lookup "v1" "Secret" .ns .name -}}
{{- if and $live $live.data (hasKey $live.data .key) -}}
{{ .key }}: {{ index $live.data .key }}
{{- else -}}
{{ .key }}: {{ randAlphaNum 48 | b64enc }}
{{- end -}}
{{- end }}
