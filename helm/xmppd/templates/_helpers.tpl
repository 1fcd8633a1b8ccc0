{{/*
Names, labels and the generated node configuration of the xmppd chart.
*/}}

{{- define "xmppd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's base name. Kept at most 52 characters: the core StatefulSet
adds "-core", its pods "-N", and the pod names end up in DNS labels and in
the controller-revision-hash label (63 characters at most).
*/}}
{{- define "xmppd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "xmppd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "xmppd.coreName" -}}
{{- printf "%s-core" (include "xmppd.fullname" .) }}
{{- end }}

{{- define "xmppd.edgeName" -}}
{{- printf "%s-edge" (include "xmppd.fullname" .) }}
{{- end }}

{{- define "xmppd.configName" -}}
{{- printf "%s-config" (include "xmppd.fullname" .) }}
{{- end }}

{{- define "xmppd.adminSecretName" -}}
{{- default (printf "%s-admin" (include "xmppd.fullname" .)) .Values.admin.existingSecret }}
{{- end }}

{{- define "xmppd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "xmppd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "xmppd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "xmppd.labels" -}}
helm.sh/chart: {{ include "xmppd.chart" . }}
{{ include "xmppd.selectorLabels" . }}
app.kubernetes.io/version: {{ default .Chart.AppVersion .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: xmppd
{{- end }}

{{/* Labels and selector labels of one component: (dict "ctx" $ "component" "core") */}}
{{- define "xmppd.componentLabels" -}}
{{ include "xmppd.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "xmppd.componentSelectorLabels" -}}
{{ include "xmppd.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The DNS suffix of the release's namespace: NAMESPACE.svc.CLUSTER-DOMAIN */}}
{{- define "xmppd.dnsSuffix" -}}
{{- printf "%s.svc.%s" .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* The gRPC address of core pod N: (dict "ctx" $ "ordinal" N) */}}
{{- define "xmppd.corePodAddress" -}}
{{- $core := include "xmppd.coreName" .ctx }}
{{- printf "%s-%d.%s.%s:%d" $core (int .ordinal) $core (include "xmppd.dnsSuffix" .ctx) (int .ctx.Values.core.grpcPort) }}
{{- end }}

{{/*
Render a map as TOML: scalar keys first, then each nested map as a
[table]. Leaves are written with toJson, whose strings, numbers, booleans
and arrays of scalars are valid TOML. null values are left out, so a
user's `key: null` removes a key the chart would set.
(dict "table" MAP "prefix" "")
*/}}
{{- define "xmppd.toml" -}}
{{- $prefix := .prefix }}
{{- range $k, $v := .table }}
{{- if and (not (kindIs "map" $v)) (not (kindIs "invalid" $v)) }}
{{- if kindIs "slice" $v }}
{{- range $v }}
{{- if or (kindIs "map" .) (kindIs "slice" .) }}
{{- fail (printf "config: %s%s: arrays of tables or of arrays are not supported" $prefix $k) }}
{{- end }}
{{- end }}
{{- end }}
{{ include "xmppd.tomlKey" $k }} = {{ toJson $v }}
{{- end }}
{{- end }}
{{- range $k, $v := .table }}
{{- if kindIs "map" $v }}
{{- $name := printf "%s%s" $prefix (include "xmppd.tomlKey" $k) }}

[{{ $name }}]
{{- include "xmppd.toml" (dict "table" $v "prefix" (printf "%s." $name)) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "xmppd.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/*
Merge the map src into the map dst, in place: nested maps merge key by key,
anything else in src replaces what dst has (false and 0 included, unlike
sprig's mergeOverwrite), and a null in src removes the key.
(dict "dst" MAP "src" MAP); renders nothing.
*/}}
{{- define "xmppd.mergeInto" -}}
{{- $dst := .dst }}
{{- range $k, $v := .src }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) }}
{{- include "xmppd.mergeInto" (dict "dst" (get $dst $k) "src" $v) }}
{{- else if kindIs "invalid" $v }}
{{- $_ := unset $dst $k }}
{{- else }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* Settings both roles share. */}}
{{- define "xmppd.config.common" -}}
{{- $c := dict "domains" .Values.domains "data_dir" "/data" }}
{{- $_ := set $c "log" (dict "level" .Values.logLevel) }}
{{- if .Values.tracing.enabled }}
{{- $_ := set $c "tracing" (dict "otlp_endpoint" .Values.tracing.endpoint "sample_ratio" .Values.tracing.sampling) }}
{{- end }}
{{- toJson $c }}
{{- end }}

{{/* core.toml as a map: the common settings, the core's own, then the user's overrides. */}}
{{- define "xmppd.config.core" -}}
{{- $c := include "xmppd.config.common" . | fromJson }}
{{- $peers := list }}
{{- range $i := until (int .Values.core.seedReplicas) }}
{{- $peers = append $peers (printf "%d=%s" (add1 $i) (include "xmppd.corePodAddress" (dict "ctx" $ "ordinal" $i))) }}
{{- end }}
{{- $_ := set $c "listeners" (dict "http" (printf "0.0.0.0:%d" (int .Values.metrics.port))) }}
{{- /* The admin API: core nodes only (an edge holds no accounts). */}}
{{- $_ := set $c "admin" (dict "token_file" "/etc/xmppd/admin/token") }}
{{- $cluster := dict "role" "core" "node_id" "ordinal" "auto_join" true }}
{{- $_ := set $cluster "listen" (printf "0.0.0.0:%d" (int .Values.core.grpcPort)) }}
{{- $_ := set $cluster "advertise" (printf "{hostname}.%s.%s:%d" (include "xmppd.coreName" .) (include "xmppd.dnsSuffix" .) (int .Values.core.grpcPort)) }}
{{- $_ := set $cluster "peers" $peers }}
{{- $_ := set $cluster "replication" .Values.core.replication }}
{{- $_ := set $cluster "shards" .Values.core.shards }}
{{- $_ := set $c "cluster" $cluster }}
{{- include "xmppd.mergeInto" (dict "dst" $c "src" (deepCopy (default dict .Values.config.common))) }}
{{- include "xmppd.mergeInto" (dict "dst" $c "src" (deepCopy (default dict .Values.core.config))) }}
{{- toJson $c }}
{{- end }}

{{/* edge.toml as a map. */}}
{{- define "xmppd.config.edge" -}}
{{- $c := include "xmppd.config.common" . | fromJson }}
{{- $l := dict "c2s" "0.0.0.0:5222" "c2s_direct_tls" "0.0.0.0:5223" "http" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}
{{- if .Values.s2s.enabled }}
{{- $secret := required "s2s.dialbackSecret is required with s2s.enabled (every edge must share it)" .Values.s2s.dialbackSecret }}
{{- $_ := set $c "s2s" (dict "enabled" true "listen" "0.0.0.0:5269" "dialback_secret" $secret) }}
{{- end }}
{{- if .Values.web.enabled }}
{{- $_ := set $l "web" "0.0.0.0:5280" }}
{{- end }}
{{- $_ := set $c "listeners" $l }}
{{- if .Values.tls.secretName }}
{{- $_ := set $c "tls" (dict "cert" "/etc/xmppd/tls/tls.crt" "key" "/etc/xmppd/tls/tls.key") }}
{{- end }}
{{- $_ := set $c "limits" (dict "max_connections" .Values.edge.maxConnections "max_connections_per_ip" .Values.edge.maxConnectionsPerIp) }}
{{- $shutdown := dict "drain_secs" (int .Values.edge.drainSeconds) }}
{{- if .Values.edge.seeOtherHost }}
{{- $_ := set $shutdown "see_other_host" .Values.edge.seeOtherHost }}
{{- end }}
{{- $_ := set $c "shutdown" $shutdown }}
{{- $core := printf "%s.%s:%d" (include "xmppd.coreName" .) (include "xmppd.dnsSuffix" .) (int .Values.core.grpcPort) }}
{{- $_ := set $c "cluster" (dict "role" "edge" "node_id" .Values.edge.nodeId "core" $core) }}
{{- include "xmppd.mergeInto" (dict "dst" $c "src" (deepCopy (default dict .Values.config.common))) }}
{{- include "xmppd.mergeInto" (dict "dst" $c "src" (deepCopy (default dict .Values.edge.config))) }}
{{- toJson $c }}
{{- end }}

{{/* The pod-level security context shared by both roles. */}}
{{- define "xmppd.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* The admin token volume: the Secret's key always lands at /etc/xmppd/admin/token. */}}
{{- define "xmppd.adminTokenVolume" -}}
- name: admin-token
  secret:
    secretName: {{ include "xmppd.adminSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ ternary .Values.admin.existingSecretKey "token" (not (empty .Values.admin.existingSecret)) }}
        path: token
{{- end }}

{{/* The three probes on the HTTP port; (dict "startupPeriod" N "startupFailures" N "livenessFailures" N) */}}
{{- define "xmppd.probes" -}}
startupProbe:
  httpGet:
    path: /startupz
    port: http
  periodSeconds: {{ .startupPeriod }}
  timeoutSeconds: 3
  failureThreshold: {{ .startupFailures }}
livenessProbe:
  httpGet:
    path: /livez
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: {{ .livenessFailures }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end }}

{{/* Downward API environment of both roles. */}}
{{- define "xmppd.podEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if .Values.tracing.enabled }}
# Spans name the pod they come from (OpenTelemetry's resource variable).
- name: OTEL_RESOURCE_ATTRIBUTES
  value: k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)
{{- end }}
{{- end }}

{{/* Spread a component's pods over nodes unless the values say otherwise: (dict "ctx" $ "component" "core" "custom" LIST) */}}
{{- define "xmppd.topologySpread" -}}
{{- if .custom }}
{{- toYaml .custom }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "xmppd.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end }}
