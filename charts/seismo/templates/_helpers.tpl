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
{{- $svc := index .root.Values.services (.role | default .name) -}}
{{- $tag := $svc.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if and $svc.gpu $svc.gpu.enabled -}}{{- $tag = printf "%s%s" $tag $svc.gpu.tagSuffix -}}{{- end -}}
{{- $repo := $svc.image.repository | default (printf "%s/%s" .root.Values.image.registry (.role | default .name)) -}}
{{ $repo }}:{{ $tag }}
{{- end -}}

{{- define "seismo.usesStore" -}}
{{- if has (.role | default .name) (list "logger" "metrics") -}}true{{- end -}}
{{- end -}}

{{/* The Deployments to render, name -> the service's values plus `role` (which service it runs) and
`modelEnv` (settings that replace the values' env entries of the same name, or drop the ones listed
in `dropEnv`). Without `models`: the example layout, one of each service. With `models` (the list
`seismo.yaml` holds): per declared model its model server (when it has an `artifact`), drift service
and outlier service, named model-<name>, drift-<name>, outlier-<name>; no explainer. */}}
{{- define "seismo.services" -}}
{{- $out := dict -}}
{{- $models := .Values.models | default list -}}
{{- $perModel := list "model" "drift" "outlier" "explainer" -}}
{{- range $name, $svc := .Values.services -}}
{{- if or (not $models) (not (has $name $perModel)) -}}
{{- $entry := merge (dict "role" $name "modelEnv" list "dropEnv" list) (deepCopy $svc) -}}
{{- if and $models (eq $name "logger") -}}
{{- $names := list -}}{{- range $models }}{{ $names = append $names .name }}{{ end -}}
{{- $_ := set $entry "modelEnv" (list (dict "name" "SEISMO_LOGGER_MODELS" "value" (join "," $names))) -}}
{{- end -}}
{{- $_ := set $out $name $entry -}}
{{- end -}}
{{- end -}}
{{- range $m := $models -}}
{{- $dir := printf "/models/declared/%s" $m.name -}}
{{- $watch := $m.watch | default (list "drift" "outliers" "performance" "diagnosis") -}}
{{- if $m.artifact -}}
{{- $env := list (dict "name" "SEISMO_MODEL_PATH" "value" (printf "/models/%s" $m.artifact)) (dict "name" "SEISMO_MODEL_NAME" "value" $m.name) -}}
{{- $_ := set $out (printf "model-%s" $m.name) (merge (dict "role" "model" "modelEnv" $env "dropEnv" list) (deepCopy $.Values.services.model)) -}}
{{- end -}}
{{- if has "drift" $watch -}}
{{- $env := list (dict "name" "SEISMO_DRIFT_MODEL" "value" $m.name) (dict "name" "SEISMO_DRIFT_DETECTOR_PATH" "value" (printf "%s/drift" $dir)) (dict "name" "SEISMO_DRIFT_WINDOW_SIZE" "value" (toString ($m.window | default 1000))) -}}
{{- $drop := list "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" -}}
{{- if $m.embedding -}}{{- $env = append $env (dict "name" "SEISMO_DRIFT_EMBEDDING_DETECTOR_PATH" "value" (printf "%s/embedding" $dir)) -}}{{- end -}}
{{- $_ := set $out (printf "drift-%s" $m.name) (merge (dict "role" "drift" "modelEnv" $env "dropEnv" $drop) (deepCopy $.Values.services.drift)) -}}
{{- end -}}
{{- if has "outliers" $watch -}}
{{- $env := list (dict "name" "SEISMO_OUTLIER_MODEL" "value" $m.name) (dict "name" "SEISMO_OUTLIER_DETECTOR_PATH" "value" (printf "%s/outlier" $dir)) -}}
{{- $drop := list "SEISMO_OUTLIER_ADVERSARIAL_DETECTOR_PATH" -}}
{{- $_ := set $out (printf "outlier-%s" $m.name) (merge (dict "role" "outlier" "modelEnv" $env "dropEnv" $drop) (deepCopy $.Values.services.outlier)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* The per-model Triggers of a `models` list: each declared model's request events to its own drift
and outlier services (their replies go back through the broker like the example's). */}}
{{- define "seismo.modelTriggers" -}}
{{- $triggers := list -}}
{{- range $m := .Values.models | default list -}}
{{- $watch := $m.watch | default (list "drift" "outliers" "performance" "diagnosis") -}}
{{- range $role := list "drift" "outlier" -}}
{{- if has (ternary "drift" "outliers" (eq $role "drift")) $watch -}}
{{- $events := dict "kserve-request" "org.kubeflow.serving.inference.request" "seldon-request" "io.seldon.serving.inference.request" -}}
{{- if and (eq $role "drift") $m.embedding -}}
{{- $_ := set $events "kserve-response" "org.kubeflow.serving.inference.response" -}}
{{- $_ := set $events "seldon-response" "io.seldon.serving.inference.response" -}}
{{- end -}}
{{- range $engine, $type := $events -}}
{{- $spec := dict "broker" "default" "filter" (dict "attributes" (dict "type" $type "inferenceservicename" $m.name))
      "subscriber" (dict "ref" (dict "apiVersion" "v1" "kind" "Service" "name" (printf "seismo-%s-%s" $role $m.name)))
      "delivery" (dict "retry" 6 "backoffPolicy" "exponential" "backoffDelay" "PT0.2S" "timeout" (ternary "PT60S" "PT30S" (eq $role "drift"))
                       "deadLetterSink" (dict "ref" (dict "apiVersion" "v1" "kind" "Service" "name" "seismo-logger") "uri" "/v1/dead-letters")) -}}
{{- $triggers = append $triggers (dict "name" (printf "%s-%s-%s" $role $m.name $engine) "role" $role "spec" $spec) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "triggers" $triggers) -}}
{{- end -}}
