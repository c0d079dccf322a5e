{{/*
Where each secret comes from, and the environment that carries it.

Every item of .Values.secrets is {value, existingSecret, key}. Its source is
item.existingSecret, else the chart's own Secret when item.value is set, else
(salt, encryptionKey, postgresUrl only) secrets.existingSecret. Secrets are
never written into config.toml: authgate's environment overrides the file.
*/}}

{{/* The items the shared secrets.existingSecret stands in for: the three the
kustomize base takes from its Secret. */}}
{{- define "authgate.sharedItems" -}}
{{- list "salt" "encryptionKey" "postgresUrl" | toJson }}
{{- end }}

{{/* JSON {name, key} of an item's secretKeyRef, or {} when the item is unset.
Args: root, item, chartSecret (the name of the chart-made Secret to use). */}}
{{- define "authgate.secretRef" -}}
{{- $s := .root.Values.secrets }}
{{- $item := index $s .item }}
{{- if and $item.existingSecret $item.value }}
{{- fail (printf "secrets.%s: set value or existingSecret, not both" .item) }}
{{- end }}
{{- if $item.existingSecret }}
{{- dict "name" $item.existingSecret "key" $item.key | toJson }}
{{- else if $item.value }}
{{- dict "name" .chartSecret "key" $item.key | toJson }}
{{- else if and $s.existingSecret (has .item (include "authgate.sharedItems" . | fromJsonArray)) }}
{{- dict "name" $s.existingSecret "key" $item.key | toJson }}
{{- else }}
{{- dict | toJson }}
{{- end }}
{{- end }}

{{/* One env entry from a secret item, or nothing when the item is unset.
Args: root, item, env (the variable), chartSecret, optional, required. */}}
{{- define "authgate.secretEnv" -}}
{{- $ref := include "authgate.secretRef" . | fromJson }}
{{- if $ref.name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- else if .required }}
{{- fail (printf "secrets.%s: set secrets.%s.value (the chart makes a Secret), secrets.%s.existingSecret, or secrets.existingSecret (%s)" .item .item .item .env) }}
{{- end }}
{{- end }}

{{/* The environment variable that carries secrets.redisNodes. */}}
{{- define "authgate.redisNodesEnv" -}}
{{- if eq .Values.redis.mode "cluster" }}AUTHGATE_REDIS_CLUSTER{{ else }}AUTHGATE_REDIS_SENTINELS{{ end }}
{{- end }}

{{/* authgate's secret environment. Args: root, chartSecret, migrate (only
what `authgate migrate` needs, as the kustomize Job has). */}}
{{- define "authgate.secretEnvs" -}}
{{- $a := dict "root" .root "chartSecret" .chartSecret }}
{{- include "authgate.secretEnv" (merge (dict "item" "salt" "env" "API_TOKEN_SALT" "required" true) $a) }}
{{- if not .migrate }}
{{- include "authgate.secretEnv" (merge (dict "item" "encryptionKey" "env" "ENCRYPTION_KEY" "optional" true) $a) }}
{{- end }}
{{- include "authgate.secretEnv" (merge (dict "item" "postgresUrl" "env" "AUTHGATE_POSTGRES_URL" "required" true) $a) }}
{{- if not .migrate }}
{{- include "authgate.secretEnv" (merge (dict "item" "postgresListenUrl" "env" "AUTHGATE_POSTGRES_LISTEN_URL") $a) }}
{{- include "authgate.secretEnv" (merge (dict "item" "redisUrl" "env" "AUTHGATE_REDIS_URL") $a) }}
{{- include "authgate.secretEnv" (merge (dict "item" "redisNodes" "env" (include "authgate.redisNodesEnv" .root)) $a) }}
{{- include "authgate.secretEnv" (merge (dict "item" "redisSentinelPassword" "env" "AUTHGATE_REDIS_SENTINEL_PASSWORD") $a) }}
{{- end }}
{{- end }}

{{/* The chart's Secret data: every item with a value, by its key. Args: root,
migrate (only the keys the migrate Job reads). */}}
{{- define "authgate.secretData" -}}
{{- $s := .root.Values.secrets }}
{{- $items := list "salt" "encryptionKey" "postgresUrl" "postgresListenUrl" "redisUrl" "redisNodes" "redisSentinelPassword" }}
{{- if .migrate }}
{{- $items = list "salt" "postgresUrl" }}
{{- end }}
{{- range $items }}
{{- $item := index $s . }}
{{- if and $item.value (not $item.existingSecret) }}
{{ $item.key }}: {{ $item.value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}
