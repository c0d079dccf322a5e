{{/*
The files authgate reads: config.toml, and the ones config.toml names (the
Redis CA, the decision listener's certificate). The gateway's pod and the
migrate Job mount the same ones, since authgate checks at start that every
file its config names exists. Args: root, configMap (its name).
*/}}

{{- define "authgate.fileVolumes" -}}
{{- $v := .root.Values }}
- name: authgate-config
  configMap:
    name: {{ .configMap }}
{{- with $v.redis.caFile }}
{{- if .secret }}
- name: redis-ca
  secret:
    secretName: {{ .secret }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- else if .configMap }}
- name: redis-ca
  configMap:
    name: {{ .configMap }}
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end }}
{{- if and $v.decision.enabled $v.decision.tlsSecret }}
- name: decision-tls
  secret:
    secretName: {{ $v.decision.tlsSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{- define "authgate.fileVolumeMounts" -}}
{{- $v := .root.Values }}
- name: authgate-config
  mountPath: /etc/authgate
  readOnly: true
{{- if or $v.redis.caFile.secret $v.redis.caFile.configMap }}
- name: redis-ca
  mountPath: {{ include "authgate.redisCaDir" . }}
  readOnly: true
{{- end }}
{{- if and $v.decision.enabled $v.decision.tlsSecret }}
- name: decision-tls
  mountPath: {{ include "authgate.decisionTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}
