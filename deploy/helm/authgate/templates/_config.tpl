{{/*
config.toml: .Values.config plus the keys the chart owns (listen addresses,
the upstream, and the opt-in Redis, Postgres LISTEN, decision, enforcement
and tracing keys). The opt-in keys are written only when their value is set:
authgate refuses keys it does not know, and older versions know none of
them. Secrets stay out of the file (see _secrets.tpl).
*/}}

{{/* Keys of config.toml that only the chart writes. */}}
{{- define "authgate.ownedKeys" -}}
{{- list "server.listen" "server.enforcement" "metrics.listen" "upstream.url" "postgres.url" "postgres.listen_url" "tokens.salt" "tokens.encryption_key" "redis.url" "redis.cluster" "redis.sentinels" "redis.sentinel_master" "redis.sentinel_tls" "redis.sentinel_password" "redis.ca_file" "decision" "tracing" | toJson }}
{{- end }}

{{/* Mount points of the files config.toml names. */}}
{{- define "authgate.redisCaDir" -}}/var/run/authgate/redis-ca{{- end }}
{{- define "authgate.decisionTlsDir" -}}/var/run/authgate/decision-tls{{- end }}

{{- define "authgate.configDict" -}}
{{- $v := .Values }}
{{- $cfg := deepCopy ($v.config | default dict) }}
{{- range (include "authgate.ownedKeys" . | fromJsonArray) }}
{{- $parts := splitList "." . }}
{{- $sec := index $cfg (first $parts) }}
{{- if or (and (eq (len $parts) 1) (hasKey $cfg (first $parts))) (and (eq (len $parts) 2) (kindIs "map" $sec) (hasKey ($sec | default dict) (last $parts))) }}
{{- fail (printf "config.%s is set by the chart from its own values (deploy/README.md, \"Helm\"); remove it from config" .) }}
{{- end }}
{{- end }}
{{- range $name := list "server" "metrics" "upstream" "postgres" "redis" }}
{{- if not (hasKey $cfg $name) }}{{ $_ := set $cfg $name dict }}{{ end }}
{{- end }}

{{- $_ := set $cfg.server "listen" (include "authgate.listen" $v.ports.http) }}
{{- if $v.enforcement }}
{{- if not (has $v.enforcement (list "enforce" "report")) }}
{{- fail (printf "enforcement: %q, want \"enforce\" or \"report\"" $v.enforcement) }}
{{- end }}
{{- $_ := set $cfg.server "enforcement" $v.enforcement }}
{{- end }}
{{- $_ := set $cfg.metrics "listen" (include "authgate.listen" $v.ports.metrics) }}
{{- if eq $v.mode "sidecar" }}
{{- $_ := set $cfg.upstream "url" (printf "http://127.0.0.1:%d" (int $v.cms.port)) }}
{{- else }}
{{- $_ := set $cfg.upstream "url" $v.upstream.url }}
{{- end }}
{{- if $v.postgres.listenUrl }}
{{- $_ := set $cfg.postgres "listen_url" $v.postgres.listenUrl }}
{{- end }}

{{- $r := $v.redis }}
{{- if $r.url }}{{ $_ := set $cfg.redis "url" $r.url }}{{ end }}
{{- if $r.cluster }}{{ $_ := set $cfg.redis "cluster" $r.cluster }}{{ end }}
{{- if $r.sentinels }}{{ $_ := set $cfg.redis "sentinels" $r.sentinels }}{{ end }}
{{- if $r.sentinelMaster }}{{ $_ := set $cfg.redis "sentinel_master" $r.sentinelMaster }}{{ end }}
{{- if $r.sentinelTls }}{{ $_ := set $cfg.redis "sentinel_tls" true }}{{ end }}
{{- if or $r.caFile.secret $r.caFile.configMap }}
{{- $_ := set $cfg.redis "ca_file" (printf "%s/%s" (include "authgate.redisCaDir" .) $r.caFile.key) }}
{{- end }}
{{- if not $cfg.redis }}{{ $_ := unset $cfg "redis" }}{{ end }}

{{- $d := $v.decision }}
{{- if $d.enabled }}
{{- $dec := dict "listen" (include "authgate.listen" $d.port) "trusted_callers" $d.trustedCallers }}
{{- if $d.tlsSecret }}
{{- $_ := set $dec "tls_cert" (printf "%s/tls.crt" (include "authgate.decisionTlsDir" .)) }}
{{- $_ := set $dec "tls_key" (printf "%s/tls.key" (include "authgate.decisionTlsDir" .)) }}
{{- end }}
{{- $_ := set $cfg "decision" $dec }}
{{- end }}

{{- $t := $v.tracing }}
{{- if $t.enabled }}
{{- $tr := dict "sample_ratio" $t.sampleRatio "service_name" $t.serviceName }}
{{- if $t.otlpEndpoint }}{{ $_ := set $tr "otlp_endpoint" $t.otlpEndpoint }}{{ end }}
{{- $_ := set $cfg "tracing" $tr }}
{{- end }}
{{- toJson $cfg }}
{{- end }}

{{- define "authgate.configToml" -}}
# Rendered by the authgate Helm chart (mode: {{ .Values.mode }}) from its values;
# change the values, not this file. /config.toml in authgate's repository
# documents every key. The secrets are not here: the pod sets them in the
# environment (API_TOKEN_SALT, ENCRYPTION_KEY, AUTHGATE_POSTGRES_URL...),
# which overrides the file.
{{ include "authgate.toml.table" (dict "path" (list) "table" (include "authgate.configDict" . | fromJson) "array" false) | trim }}
{{- end }}
