{{/* Name of the chart, overridable. */}}
{{- define "podvirt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name. */}}
{{- define "podvirt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "podvirt.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "podvirt.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object; pass (dict "root" $ "component" "webhook"). */}}
{{- define "podvirt.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "podvirt.selectorLabels" . }}
{{- end -}}

{{/* Labels selecting one component's pods. */}}
{{- define "podvirt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podvirt.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "podvirt.webhook.name" -}}{{ include "podvirt.fullname" . }}-webhook{{- end -}}
{{- define "podvirt.extender.name" -}}{{ include "podvirt.fullname" . }}-extender{{- end -}}
{{- define "podvirt.scheduler.name" -}}{{ include "podvirt.fullname" . }}-scheduler{{- end -}}
{{- define "podvirt.probe.name" -}}{{ include "podvirt.fullname" . }}-probe{{- end -}}
{{- define "podvirt.evacuator.name" -}}{{ include "podvirt.fullname" . }}-evacuator{{- end -}}
{{- define "podvirt.certs.name" -}}{{ include "podvirt.fullname" . }}-certs{{- end -}}

{{/* DNS names the serving certificate must cover: both Services, short and qualified. */}}
{{- define "podvirt.tls.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- range $svc := list (include "podvirt.webhook.name" .) (include "podvirt.extender.name" .) }}
- {{ $svc }}
- {{ $svc }}.{{ $ns }}
- {{ $svc }}.{{ $ns }}.svc
- {{ $svc }}.{{ $ns }}.svc.cluster.local
{{- end }}
{{- end -}}

{{- define "podvirt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "podvirt.launcherImage" -}}
{{- printf "%s:%s" .Values.launcherImage.repository (default .Chart.AppVersion .Values.launcherImage.tag) -}}
{{- end -}}

{{/* schedulerName the webhook writes into VM pods (the contract's): the VM profile of the scheduler configuration. */}}
{{- define "podvirt.schedulerName" -}}
{{- .Values.scheduler.name -}}
{{- end -}}

{{/* Base URL of the extender as kube-scheduler calls it. */}}
{{- define "podvirt.extender.url" -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" .Values.extender.https) (include "podvirt.extender.name" .) .Release.Namespace (int .Values.extender.port) -}}
{{- end -}}

{{/* Hardened container securityContext shared by the podvirt containers. */}}
{{- define "podvirt.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The contract file (podvirt/vmspec/contract.py): the contract values plus the keys the
chart knows from values of their own, each set in one place (values.schema.json refuses
them in contract:). */}}
{{- define "podvirt.contract" -}}
{{- $doc := deepCopy .Values.contract -}}
{{- $_ := set $doc "schedulerName" .Values.scheduler.name -}}
{{- $_ := set $doc "launcherImage" (include "podvirt.launcherImage" .) -}}
{{- $_ := set $doc "deviceResources" (.Values.passthrough.resources | default dict) -}}
{{- toYaml $doc -}}
{{- end -}}

{{- define "podvirt.contract.name" -}}{{ include "podvirt.fullname" . }}-contract{{- end -}}
{{- define "podvirt.contract.dir" -}}/etc/podvirt/contract{{- end -}}

{{/* Pod template annotation that rolls a component when the contract changes. */}}
{{- define "podvirt.contract.checksum" -}}
checksum/contract: {{ include "podvirt.contract" . | sha256sum }}
{{- end -}}

{{/* The --contract argument, the volume mount and the volume of the contract ConfigMap. */}}
{{- define "podvirt.contract.arg" -}}
--contract={{ include "podvirt.contract.dir" . }}/contract.yaml
{{- end -}}
{{- define "podvirt.contract.mount" -}}
- {name: contract, mountPath: {{ include "podvirt.contract.dir" . }}, readOnly: true}
{{- end -}}
{{- define "podvirt.contract.volume" -}}
- name: contract
  configMap: {name: {{ include "podvirt.contract.name" . }}}
{{- end -}}

{{/* Fails rendering on values that would give a broken install. */}}
{{- define "podvirt.validate" -}}
{{- if and .Values.certManager.enabled .Values.tls.caBundle -}}
{{- fail "tls.caBundle and certManager.enabled exclude each other: cert-manager injects the CA" -}}
{{- end -}}
{{- if not (or .Values.certManager.enabled .Values.tls.generate .Values.tls.caBundle) -}}
{{- fail "no CA for the webhook: enable tls.generate or certManager.enabled, or set tls.caBundle" -}}
{{- end -}}
{{- if or (lt (int .Values.webhook.timeoutSeconds) 1) (gt (int .Values.webhook.timeoutSeconds) 30) -}}
{{- fail "webhook.timeoutSeconds must be between 1 and 30 (the API server's limit)" -}}
{{- end -}}
{{- end -}}

{{/* The webhook's CA bundle (base64) as the webhook configurations carry it at render time;
empty when the post-install hook or cert-manager injects it later. */}}
{{- define "podvirt.caBundle" -}}
{{- if .Values.tls.caBundle -}}
{{- .Values.tls.caBundle | b64enc -}}
{{- else if and .Values.tls.generate (not .Values.certManager.enabled) -}}
{{- /* On upgrade keep the CA already injected; the post-upgrade hook refreshes it if the hook renewed the certificate. */ -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.tls.secretName -}}
{{- if and $secret $secret.data (index $secret.data "ca.crt") -}}
{{- index $secret.data "ca.crt" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The tlsConfig of the scheduler's extender entries (nothing with extender.https off). */}}
{{- define "podvirt.scheduler.extenderTLS" -}}
{{- if .Values.extender.https }}
tlsConfig:
  caFile: /etc/podvirt/tls/ca.crt
  serverName: {{ include "podvirt.extender.name" . }}.{{ .Release.Namespace }}.svc
{{- end }}
{{- end -}}
