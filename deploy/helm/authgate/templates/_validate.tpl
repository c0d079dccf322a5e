{{/*
Values that cannot work together: refused at render time with one line that
says what to change, rather than a pod that never becomes ready.
(The secrets are checked where they are used, in _secrets.tpl.)
*/}}
{{- define "authgate.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.mode (list "sidecar" "standalone")) }}
{{- fail (printf "mode: %q, want \"sidecar\" or \"standalone\"" $v.mode) }}
{{- end }}
{{- if eq $v.mode "standalone" }}
{{- if not $v.upstream.url }}
{{- fail "mode standalone: set upstream.url to the CMS Service (e.g. http://strapi.cms.svc:1337)" }}
{{- end }}
{{- else }}
{{- if $v.upstream.url }}
{{- fail "mode sidecar: the upstream is the CMS container (http://127.0.0.1:<cms.port>); unset upstream.url" }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- fail "autoscaling is for mode standalone: in sidecar mode the CMS's pods are scaled as the CMS" }}
{{- end }}
{{- end }}

{{- $r := $v.redis }}
{{- $s := $v.secrets }}
{{- $modes := list }}
{{- if or $r.url $s.redisUrl.value $s.redisUrl.existingSecret }}{{ $modes = append $modes "url" }}{{ end }}
{{- if $r.cluster }}{{ $modes = append $modes "cluster" }}{{ end }}
{{- if $r.sentinels }}{{ $modes = append $modes "sentinels" }}{{ end }}
{{- if $r.mode }}{{ $modes = append $modes (printf "mode %s (secrets.redisNodes)" $r.mode) }}{{ end }}
{{- if gt (len $modes) 1 }}
{{- fail (printf "redis: set one of url, cluster, sentinels, mode; found %s" (join ", " $modes)) }}
{{- end }}
{{- if and $r.url (or $s.redisUrl.value $s.redisUrl.existingSecret) }}
{{- fail "redis.url and secrets.redisUrl: set one" }}
{{- end }}
{{- if and $r.mode (not (has $r.mode (list "cluster" "sentinels"))) }}
{{- fail (printf "redis.mode: %q, want \"cluster\" or \"sentinels\" (with secrets.redisNodes)" $r.mode) }}
{{- end }}
{{- $nodesSet := or $s.redisNodes.value $s.redisNodes.existingSecret }}
{{- if and $r.mode (not $nodesSet) }}
{{- fail "redis.mode is for a node list in secrets.redisNodes; set it, or use redis.cluster / redis.sentinels" }}
{{- end }}
{{- if and $nodesSet (not $r.mode) }}
{{- fail "secrets.redisNodes: set redis.mode to \"cluster\" or \"sentinels\"" }}
{{- end }}
{{- $sentinel := or $r.sentinels (eq $r.mode "sentinels") }}
{{- if and $sentinel (not $r.sentinelMaster) }}
{{- fail "redis sentinels: set redis.sentinelMaster" }}
{{- end }}
{{- if and $r.sentinelMaster (not $sentinel) }}
{{- fail "redis.sentinelMaster is for redis.sentinels" }}
{{- end }}
{{- if and (or $r.sentinelTls $s.redisSentinelPassword.value $s.redisSentinelPassword.existingSecret) (not $sentinel) }}
{{- fail "redis.sentinelTls and secrets.redisSentinelPassword are for redis.sentinels" }}
{{- end }}
{{- if and $r.caFile.secret $r.caFile.configMap }}
{{- fail "redis.caFile: set secret or configMap, not both" }}
{{- end }}
{{- if and (or $r.caFile.secret $r.caFile.configMap) (not $modes) }}
{{- fail "redis.caFile: no Redis is configured" }}
{{- end }}

{{- if and $v.postgres.listenUrl (or $s.postgresListenUrl.value $s.postgresListenUrl.existingSecret) }}
{{- fail "postgres.listenUrl and secrets.postgresListenUrl: set one" }}
{{- end }}

{{- if and $v.decision.enabled (not $v.decision.trustedCallers) }}
{{- fail "decision.enabled: list the front proxy's pod addresses (IPs or CIDRs) in decision.trustedCallers; authgate answers no one else" }}
{{- end }}
{{- $ports := list (int $v.ports.http) (int $v.ports.metrics) }}
{{- if $v.decision.enabled }}{{ $ports = append $ports (int $v.decision.port) }}{{ end }}
{{- if eq $v.mode "sidecar" }}{{ $ports = append $ports (int $v.cms.port) }}{{ end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail (printf "ports: %v must all differ (ports.http, ports.metrics, decision.port, cms.port)" $ports) }}
{{- end }}
{{- end }}
