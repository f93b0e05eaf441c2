{{/*
The whole envoy.yaml. Two listeners on the servers' own ports: HTTP 8000 (POST /generate streams, OIP v2 REST,
health) to the servers' HTTP port, gRPC 8001 (native streaming, OIP v2 gRPC, grpc.health.v1) to their gRPC port
over HTTP/2. Both clusters resolve the headless Service (STRICT_DNS: every ready pod), health-check every
endpoint actively and eject failing ones; routes have no timeout, so a long stream is never cut.
*/}}
{{- define "caloflow.envoyFilters" -}}
{{- $e := .Values.envoy -}}
{{- if $e.auth.enabled }}
- name: envoy.filters.http.jwt_authn
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
    providers:
      caloflow:
        {{- with $e.auth.issuer }}
        issuer: {{ . | quote }}
        {{- end }}
        {{- with $e.auth.audiences }}
        audiences:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        forward: true
        {{- if $e.auth.localJwks }}
        local_jwks:
          inline_string: {{ $e.auth.localJwks | quote }}
        {{- else }}
        remote_jwks:
          http_uri:
            uri: {{ required "envoy.auth: set remoteJwksUri or localJwks" $e.auth.remoteJwksUri | quote }}
            cluster: jwks
            timeout: 5s
          cache_duration: {{ $e.auth.remoteJwksCacheDuration }}
          async_fetch:
            fast_listener: false
        {{- end }}
    rules:
      {{- range $e.auth.publicPaths }}
      {{- if hasSuffix "/" . }}
      - match:
          prefix: {{ . | quote }}
      {{- else }}
      - match:
          path: {{ . | quote }}
      {{- end }}
      {{- end }}
      - match:
          prefix: "/"
        requires:
          provider_name: caloflow
{{- end }}
{{- if $e.rateLimit.enabled }}
- name: envoy.filters.http.local_ratelimit
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
    stat_prefix: local_rate_limit
    token_bucket:
      max_tokens: {{ $e.rateLimit.maxTokens }}
      tokens_per_fill: {{ $e.rateLimit.tokensPerFill }}
      fill_interval: {{ $e.rateLimit.fillInterval }}
    filter_enabled:
      default_value: {numerator: 100, denominator: HUNDRED}
    filter_enforced:
      default_value: {numerator: 100, denominator: HUNDRED}
    rate_limited_as_resource_exhausted: true
{{- end }}
- name: envoy.filters.http.router
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}

{{- define "caloflow.envoyListener" -}}
{{- $e := .root.Values.envoy -}}
- name: {{ .name }}
  address:
    socket_address: {address: 0.0.0.0, port_value: {{ .port }}}
  per_connection_buffer_limit_bytes: {{ $e.bufferLimitBytes | int64 }}
  filter_chains:
    - filters:
        - name: envoy.filters.network.http_connection_manager
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
            stat_prefix: {{ .name }}
            codec_type: AUTO
            stream_idle_timeout: {{ $e.streamIdleTimeout }}
            http2_protocol_options:
              initial_stream_window_size: {{ $e.http2StreamWindowBytes | int64 }}
              initial_connection_window_size: {{ $e.http2ConnectionWindowBytes | int64 }}
            access_log:
              - name: envoy.access_loggers.stdout
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
            route_config:
              name: {{ .name }}
              virtual_hosts:
                - name: caloflow
                  domains: ["*"]
                  routes:
                    - match: {prefix: "/"}
                      route:
                        cluster: {{ .cluster }}
                        # No limit on a whole response: shower streams last minutes.
                        timeout: {{ $e.routeTimeout }}
                        idle_timeout: {{ $e.streamIdleTimeout }}
                        retry_policy:
                          retry_on: {{ .retryOn }}
                          {{- if .retriableStatusCodes }}
                          retriable_status_codes: {{ toJson .retriableStatusCodes }}
                          {{- end }}
                          num_retries: {{ $e.retries }}
                          retry_host_predicate:
                            - name: envoy.retry_host_predicates.previous_hosts
                              typed_config:
                                "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                          host_selection_retry_max_attempts: 3
            http_filters:
              {{- include "caloflow.envoyFilters" .root | trim | nindent 14 }}
{{- end -}}

{{- define "caloflow.envoyCluster" -}}
{{- $e := .root.Values.envoy -}}
- name: {{ .name }}
  type: STRICT_DNS
  dns_lookup_family: V4_ONLY
  dns_refresh_rate: {{ $e.dnsRefreshRate }}
  connect_timeout: {{ $e.connectTimeout }}
  lb_policy: {{ $e.loadBalancerPolicy }}
  per_connection_buffer_limit_bytes: {{ $e.bufferLimitBytes | int64 }}
  {{- if .http2 }}
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      explicit_http_config:
        http2_protocol_options:
          initial_stream_window_size: {{ $e.http2StreamWindowBytes | int64 }}
          initial_connection_window_size: {{ $e.http2ConnectionWindowBytes | int64 }}
  {{- end }}
  # Envoy's default panic threshold (50 %) stays: with fewer healthy hosts it spreads over all of them, and a
  # draining server's refusal (503 / UNAVAILABLE) is retried on another host. (healthy_panic_threshold 0 made
  # Envoy 1.40 answer "no healthy upstream" with every host healthy in tests/test_k8s_rehearsal.py.)
  load_assignment:
    cluster_name: {{ .name }}
    endpoints:
      - lb_endpoints:
          - endpoint:
              address:
                socket_address:
                  address: {{ include "caloflow.serverHost" .root }}
                  port_value: {{ .port }}
  health_checks:
    - interval: {{ $e.healthCheck.interval }}
      # Also while a host has had no traffic (Envoy's default then is 60 s): a fresh Envoy, or a cluster whose
      # only traffic is long streams, must still see a draining server go within the drain grace.
      no_traffic_interval: {{ $e.healthCheck.interval }}
      timeout: {{ $e.healthCheck.timeout }}
      unhealthy_threshold: {{ $e.healthCheck.unhealthyThreshold }}
      healthy_threshold: {{ $e.healthCheck.healthyThreshold }}
      {{- if .http2 }}
      grpc_health_check: {}
      {{- else }}
      http_health_check:
        path: /v2/health/ready
      {{- end }}
  outlier_detection:
    consecutive_gateway_failure: {{ $e.outlierDetection.consecutiveGatewayFailure }}
    enforcing_consecutive_gateway_failure: 100
    interval: {{ $e.outlierDetection.interval }}
    base_ejection_time: {{ $e.outlierDetection.baseEjectionTime }}
    max_ejection_percent: {{ $e.outlierDetection.maxEjectionPercent }}
{{- end -}}

{{- define "caloflow.envoyConfig" -}}
{{- $e := .Values.envoy -}}
{{- $ports := .Values.server.service.ports -}}
admin:
  address:
    socket_address: {address: 0.0.0.0, port_value: {{ $e.service.ports.admin }}}
static_resources:
  listeners:
    {{- include "caloflow.envoyListener" (dict "root" . "name" "http" "port" $e.service.ports.http "cluster" "caloflow_http" "retryOn" "connect-failure,refused-stream,reset,retriable-status-codes" "retriableStatusCodes" (list 503)) | nindent 4 }}
    {{- include "caloflow.envoyListener" (dict "root" . "name" "grpc" "port" $e.service.ports.grpc "cluster" "caloflow_grpc" "retryOn" "connect-failure,refused-stream,reset,unavailable") | nindent 4 }}
  clusters:
    {{- include "caloflow.envoyCluster" (dict "root" . "name" "caloflow_http" "port" $ports.http "http2" false) | nindent 4 }}
    {{- include "caloflow.envoyCluster" (dict "root" . "name" "caloflow_grpc" "port" $ports.grpc "http2" true) | nindent 4 }}
    {{- if and $e.auth.enabled (not $e.auth.localJwks) }}
    {{- $uri := urlParse $e.auth.remoteJwksUri }}
    {{- $hostPort := splitList ":" $uri.host }}
    {{- $host := first $hostPort }}
    {{- $port := ternary (last $hostPort) "443" (eq (len $hostPort) 2) }}
    - name: jwks
      type: LOGICAL_DNS
      dns_lookup_family: V4_ONLY
      connect_timeout: 5s
      load_assignment:
        cluster_name: jwks
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: {{ $host }}, port_value: {{ $port }}}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: {{ $host }}
    {{- end }}
{{- end -}}
