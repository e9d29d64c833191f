{{- define "odin-test.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: odin-test-chart
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
release: {{ .Release.Name }}
{{- end -}}
{{- define "odin-test.container" -}}
image: registry.invalid/odin-test/{{ .name }}:{{ .root.Chart.Version }}
imagePullPolicy: IfNotPresent
{{- with .resources }}
resources: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
