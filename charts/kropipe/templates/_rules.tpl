{{/* Reading the stages' annotations and syncing the promoted Application: wherever
Applications are watched. */}}
{{- define "kropipe.applicationRules" -}}
- apiGroups: [argoproj.io]
  resources: [applications]
  verbs: [get, list, watch, patch]
- apiGroups: [argoproj.io]
  resources: [applicationsets]
  verbs: [get, list, watch]
{{- end }}
