{{/*
A TOML writer for config.toml. Helm's toToml cannot serve: values arrive as
float64, so `worker_threads: 2` would become `worker_threads = 2.0`, which
authgate (an integer key) refuses. Here whole numbers are integers, except the
keys authgate reads as floats (authgate.toml.floatKeys), which always get a
decimal point.

Strings are written as JSON strings, which are valid TOML basic strings.
*/}}

{{- define "authgate.toml.floatKeys" -}}
{{- list "sample_ratio" | toJson }}
{{- end }}

{{- define "authgate.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* A list whose every item is a table: an array of tables. */}}
{{- define "authgate.toml.isTableArray" -}}
{{- $yes := and (kindIs "slice" .) (gt (len .) 0) }}
{{- range (ternary . (list) (kindIs "slice" .)) }}
{{- if not (kindIs "map" .) }}{{ $yes = false }}{{ end }}
{{- end }}
{{- ternary "true" "" $yes }}
{{- end }}

{{/* A value: args key (for the float keys), value. */}}
{{- define "authgate.toml.value" -}}
{{- $v := .value }}
{{- if kindIs "string" $v }}{{ toJson $v }}
{{- else if kindIs "bool" $v }}{{ $v }}
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
{{- $whole := eq ($v | int64 | float64) ($v | float64) }}
{{- if has .key (include "authgate.toml.floatKeys" . | fromJsonArray) }}
{{- if $whole }}{{ printf "%d.0" ($v | int64) }}{{ else }}{{ $v | float64 }}{{ end }}
{{- else if $whole }}{{ $v | int64 }}
{{- else }}{{ $v | float64 }}
{{- end }}
{{- else if kindIs "slice" $v }}
{{- $items := list }}
{{- range $v }}
{{- if kindIs "map" . }}{{ fail "config: a list mixing tables and values cannot be written as TOML" }}{{ end }}
{{- $items = append $items (include "authgate.toml.value" (dict "key" "" "value" .)) }}
{{- end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else if kindIs "invalid" $v }}
{{- fail (printf "config: key %s has no value (null); remove it instead" .key) }}
{{- else }}
{{- fail (printf "config: cannot write %s (%s) as TOML" .key (kindOf $v)) }}
{{- end }}
{{- end }}

{{/* A table: args path (list of keys), table, array (a [[...]] entry). Its
own values first, then its sub-tables, as TOML requires. */}}
{{- define "authgate.toml.table" -}}
{{- $path := .path }}
{{- $t := .table }}
{{- if $path }}
{{- $name := list }}
{{- range $path }}{{ $name = append $name (include "authgate.toml.key" .) }}{{ end }}
{{- if .array }}
[[{{ join "." $name }}]]
{{- else }}
[{{ join "." $name }}]
{{- end }}
{{- end }}
{{- range $k, $v := $t }}
{{- if not (or (kindIs "map" $v) (include "authgate.toml.isTableArray" $v)) }}
{{- if not $path }}{{ fail (printf "config: %s must be a section (a map)" $k) }}{{ end }}
{{ include "authgate.toml.key" $k }} = {{ include "authgate.toml.value" (dict "key" $k "value" $v) }}
{{- end }}
{{- end }}
{{- range $k, $v := $t }}
{{- if kindIs "map" $v }}
{{ include "authgate.toml.table" (dict "path" (append $path $k) "table" $v "array" false) }}
{{- else if include "authgate.toml.isTableArray" $v }}
{{- range $v }}
{{ include "authgate.toml.table" (dict "path" (append $path $k) "table" . "array" true) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
