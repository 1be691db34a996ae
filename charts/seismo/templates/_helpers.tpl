{{/* Shared pieces. Object names are fixed (`seismo-<service>`, the Broker `default`), as in the kustomize
base, so the configs that name each other (the explainer's model URL, the Triggers' subscribers) hold:
one Seismo release per namespace. */}}

{{- define "seismo.labels" -}}
app.kubernetes.io/part-of: seismo
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: "{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}"
{{- end -}}

{{/* The selector labels: the same as the kustomize base's, so both select the same pods. */}}
{{- define "seismo.selector" -}}
app.kubernetes.io/name: seismo-{{ .name }}
app.kubernetes.io/part-of: seismo
{{- end -}}

{{- define "seismo.brokerIngress" -}}
{{- if eq .Values.broker.class "Kafka" -}}
http://kafka-broker-ingress.knative-eventing.svc.cluster.local/{{ .Release.Namespace }}/default
{{- else -}}
http://broker-ingress.knative-eventing.svc.cluster.local/{{ .Release.Namespace }}/default
{{- end -}}
{{- end -}}

{{/* image for one service: registry/name:tag, the tag suffixed for GPU builds. */}}
{{- define "seismo.image" -}}
{{- $svc := index .root.Values.services .name -}}
{{- $tag := $svc.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if and $svc.gpu $svc.gpu.enabled -}}{{- $tag = printf "%s%s" $tag $svc.gpu.tagSuffix -}}{{- end -}}
{{- $repo := $svc.image.repository | default (printf "%s/%s" .root.Values.image.registry .name) -}}
{{ $repo }}:{{ $tag }}
{{- end -}}

{{- define "seismo.usesStore" -}}
{{- if has .name (list "logger" "metrics") -}}true{{- end -}}
{{- end -}}
