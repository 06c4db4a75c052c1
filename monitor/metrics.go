package monitor

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/busbar/busbar/broker"
)

// The figures are gathered once, as Families (Metrics), and either
// written in the Prometheus text exposition format (0.0.4) by the few
// lines below, or handed to a Prometheus registry by the collector in
// monitor/prom. This package does not import a Prometheus client
// library: it would put its module and its dependencies (protobuf among
// them) into every embedder's build. The tests read the text with
// prometheus/common's own parser.

// Metric names. Counters end in _total; every one is prefixed busbar_.
const (
	MetricInfo             = "busbar_info"
	MetricStartTime        = "busbar_start_time_seconds"
	MetricConnections      = "busbar_connections"
	MetricSubscriptions    = "busbar_subscriptions"
	MetricInMessages       = "busbar_in_messages_total"
	MetricInBytes          = "busbar_in_bytes_total"
	MetricOutMessages      = "busbar_out_messages_total"
	MetricOutBytes         = "busbar_out_bytes_total"
	MetricSlowConsumers    = "busbar_slow_consumers_total"
	MetricAuthFailures     = "busbar_auth_failures_total"
	MetricClosedConns      = "busbar_closed_connections_total"
	MetricMQTTSessions     = "busbar_mqtt_sessions"
	MetricMQTTConnected    = "busbar_mqtt_sessions_connected"
	MetricMQTTInflight     = "busbar_mqtt_inflight_messages"
	MetricMQTTQueued       = "busbar_mqtt_queued_messages"
	MetricMQTTDropped      = "busbar_mqtt_dropped_messages_total"
	MetricMQTTDenied       = "busbar_mqtt_denied_messages_total"
	MetricMQTTQueuedBytes  = "busbar_mqtt_queued_bytes"
	MetricMQTTOffline      = "busbar_mqtt_offline_queued_bytes"
	MetricRetained         = "busbar_retained_messages"
	MetricHubReady         = "busbar_hub_ready"
	MetricHubRTT           = "busbar_hub_rtt_seconds"
	MetricHubWrites        = "busbar_hub_writes_total"
	MetricHubWriteErrors   = "busbar_hub_write_errors_total"
	MetricHubClaims        = "busbar_hub_claims_total"
	MetricHubTakeovers     = "busbar_hub_takeovers_total"
	MetricHubAdopted       = "busbar_hub_adopted_total"
	MetricStoreSize        = "busbar_store_size_bytes"
	MetricStoreRecords     = "busbar_store_records_total"
	MetricStoreFsyncs      = "busbar_store_fsyncs_total"
	MetricStoreLastFsync   = "busbar_store_last_fsync_seconds"
	MetricStoreCompactions = "busbar_store_compactions_total"
)

// Family is one metric family: a name, its type ("gauge" or "counter"),
// its help text, and its samples, all with the same label names.
type Family struct {
	Name, Type, Help string
	Labels           []string // label names, in order; none for a single sample
	Samples          []Sample
}

// Sample is one value of a Family, with the values of its labels (in
// the order of Family.Labels).
type Sample struct {
	LabelValues []string
	Value       float64
}

// WriteMetrics appends the Prometheus text exposition of the broker's
// figures (Metrics) to buf.
func (s *Server) WriteMetrics(buf []byte) []byte {
	for _, f := range s.Metrics() {
		buf = f.appendText(buf)
	}
	return buf
}

// Metrics gathers the broker's figures: every family /metrics shows, in
// order. Any goroutine.
func (s *Server) Metrics() []Family {
	p := &metricSet{}
	o := s.b.Options()
	f := s.gather(false)
	p.family(MetricInfo, "gauge", "Build and identity of the server (value 1).")
	p.sample(MetricInfo, 1, "version", broker.Version, "go_version", broker.GoVersion(), "server_id", s.b.ID(), "server_name", o.ServerName)
	p.family(MetricStartTime, "gauge", "When the broker was made, in seconds since the epoch.")
	p.sample(MetricStartTime, float64(s.b.StartTime().UnixNano())/1e9)

	labels := f.labels()
	byTransport := func(name, typ, help string, v func(t *transportFigures) int64) {
		p.family(name, typ, help)
		for _, l := range labels {
			p.sample(name, float64(v(f.by[l])), "transport", l)
		}
	}
	byTransport(MetricConnections, "gauge", "Open connections by transport.", func(t *transportFigures) int64 { return int64(t.Conns) })
	byTransport(MetricInMessages, "counter", "Messages received from clients, by transport.", func(t *transportFigures) int64 { return t.InMsgs })
	byTransport(MetricInBytes, "counter", "Message bytes (headers and payload) received from clients, by transport.", func(t *transportFigures) int64 { return t.InBytes })
	byTransport(MetricOutMessages, "counter", "Messages delivered to clients, by transport.", func(t *transportFigures) int64 { return t.OutMsgs })
	byTransport(MetricOutBytes, "counter", "Message bytes (headers and payload) delivered to clients, by transport; in-process clients count none.", func(t *transportFigures) int64 { return t.OutBytes })

	st := s.b.Stats()
	p.family(MetricSubscriptions, "gauge", "Subscriptions in every account's router.")
	p.sample(MetricSubscriptions, float64(st.Subscriptions))
	p.family(MetricSlowConsumers, "counter", "Clients closed for falling behind (over max_pending or the write deadline).")
	p.sample(MetricSlowConsumers, float64(st.SlowConsumers))
	s.writeAuthFailures(p)
	s.writeClosed(p)
	if s.opts.Leafs != nil {
		writeLeafs(p, s.opts.Leafs())
	}
	if s.opts.MQTT != nil {
		s.writeMQTT(p, s.opts.MQTT())
	}
	if s.opts.Store != nil {
		writeStore(p, s.opts.Store())
	}
	if s.opts.Hub != nil {
		writeHub(p, s.opts.Hub())
	}
	return p.fams
}

func (s *Server) writeAuthFailures(p *metricSet) {
	type row struct {
		transport, reason string
		n                 int64
	}
	sum := make(map[[2]string]int64)
	for k, n := range s.b.AuthFailures() {
		sum[[2]string{transportOf(k.ConnType, ""), k.Reason}] += n
	}
	rows := make([]row, 0, len(sum))
	for k, n := range sum {
		rows = append(rows, row{k[0], k[1], n})
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.transport, b.transport), cmp.Compare(a.reason, b.reason))
	})
	p.family(MetricAuthFailures, "counter", "Refused authentications by transport and reason (invalid_credentials, connection_type, expired, error).")
	for _, r := range rows {
		p.sample(MetricAuthFailures, float64(r.n), "transport", r.transport, "reason", r.reason)
	}
}

// writeClosed writes the connections closed so far by transport and
// reason (nats-server's closed-state words, broker.Reason*).
func (s *Server) writeClosed(p *metricSet) {
	type row struct {
		transport, reason string
		n                 int64
	}
	sum := make(map[[2]string]int64)
	for _, c := range s.b.ClosedCounts() {
		sum[[2]string{transportOf(c.ConnType, c.Transport), c.Reason}] += c.N
	}
	rows := make([]row, 0, len(sum))
	for k, n := range sum {
		rows = append(rows, row{k[0], k[1], n})
	}
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(a.transport, b.transport), cmp.Compare(a.reason, b.reason))
	})
	p.family(MetricClosedConns, "counter", "Connections closed, by transport and reason (\"Client Closed\", \"Slow Consumer (Pending Bytes)\", \"Server Shutdown\", ...).")
	for _, r := range rows {
		p.sample(MetricClosedConns, float64(r.n), "transport", r.transport, "reason", r.reason)
	}
}

func (s *Server) writeMQTT(p *metricSet, m MQTTStats) {
	gauges := []struct {
		name, typ, help string
		v               float64
	}{
		{MetricMQTTSessions, "gauge", "MQTT sessions kept, connected or not.", float64(m.Sessions)},
		{MetricMQTTConnected, "gauge", "MQTT sessions with a live connection.", float64(m.Connected)},
		{MetricMQTTInflight, "gauge", "QoS 1 and 2 messages sent to MQTT clients and not yet acknowledged.", float64(m.Inflight)},
		{MetricMQTTQueued, "gauge", "Messages queued in MQTT sessions behind the in-flight window or an offline client.", float64(m.Queued)},
		{MetricMQTTDenied, "counter", "Queued or restored MQTT messages dropped because the session's identity may no longer receive them.", float64(m.Denied)},
		{MetricMQTTQueuedBytes, "gauge", "Bytes MQTT sessions hold in QoS 1 and 2 messages, queued or in flight (bounded per session by max_queued_bytes).", float64(m.QueuedBytes)},
		{MetricMQTTOffline, "gauge", "Of those, bytes held by sessions without a connection (bounded by max_offline_bytes).", float64(m.OfflineBytes)},
		{MetricRetained, "gauge", "Retained messages.", float64(m.Retained)},
	}
	for _, g := range gauges {
		p.family(g.name, g.typ, g.help)
		p.sample(g.name, g.v)
	}
	const help = "Messages for MQTT sessions dropped, by reason (offline: QoS 0 without a connection; queue_messages, queue_bytes, offline_bytes: past max_queued_messages, max_queued_bytes, max_offline_bytes; expired; too_large: over the client's Maximum Packet Size)."
	p.family(MetricMQTTDropped, "counter", help)
	if len(m.DroppedBy) == 0 {
		p.sample(MetricMQTTDropped, float64(m.Dropped))
		return
	}
	reasons := make([]string, 0, len(m.DroppedBy))
	for r := range m.DroppedBy {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		p.sample(MetricMQTTDropped, float64(m.DroppedBy[r]), "reason", r)
	}
}

func writeStore(p *metricSet, st StoreStats) {
	rows := []struct {
		name, typ, help string
		v               float64
	}{
		{MetricStoreSize, "gauge", "Size of the durable store's log.", float64(st.Bytes)},
		{MetricStoreRecords, "counter", "Records written to the durable store.", float64(st.Records)},
		{MetricStoreFsyncs, "counter", "fsyncs of the durable store (one per commit group).", float64(st.Commits)},
		{MetricStoreLastFsync, "gauge", "Duration of the durable store's last fsync.", st.LastSync.Seconds()},
		{MetricStoreCompactions, "counter", "Compactions of the durable store's log.", float64(st.Compactions)},
	}
	for _, r := range rows {
		p.family(r.name, r.typ, r.help)
		p.sample(r.name, r.v)
	}
}

func writeHub(p *metricSet, h HubStats) {
	ready := 0.0
	if h.Ready {
		ready = 1
	}
	rows := []struct {
		name, typ, help string
		v               float64
	}{
		{MetricHubReady, "gauge", "1 while the MQTT state in the hub's JetStream can be used.", ready},
		{MetricHubRTT, "gauge", "Last round trip to the hub's JetStream.", h.RTT.Seconds()},
		{MetricHubWrites, "counter", "MQTT state writes sent to the hub.", float64(h.Writes)},
		{MetricHubWriteErrors, "counter", "MQTT state writes the hub did not acknowledge.", float64(h.WriteErrors)},
		{MetricHubClaims, "counter", "Client ids claimed in the hub by this instance.", float64(h.Claims)},
		{MetricHubTakeovers, "counter", "Sessions another instance took over from this one.", float64(h.Takeovers)},
		{MetricHubAdopted, "counter", "Sessions this instance took from an instance that is gone.", float64(h.Adopted)},
	}
	for _, r := range rows {
		p.family(r.name, r.typ, r.help)
		p.sample(r.name, r.v)
	}
}

// ContentType is the Prometheus text format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.metrics != nil {
		s.metrics.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", ContentType)
	_, _ = w.Write(s.WriteMetrics(make([]byte, 0, 4096)))
}

// metricSet collects families as the figures are read.
type metricSet struct{ fams []Family }

// family starts a metric family.
func (p *metricSet) family(name, typ, help string) {
	p.fams = append(p.fams, Family{Name: name, Type: typ, Help: help})
}

// sample adds a value to the family just started; labels are name,
// value pairs, the same names for every sample of a family.
func (p *metricSet) sample(name string, v float64, labels ...string) {
	f := &p.fams[len(p.fams)-1]
	if f.Name != name {
		panic("monitor: sample " + name + " outside its family") // a bug in this file
	}
	sm := Sample{Value: v}
	if len(f.Samples) == 0 {
		for i := 0; i+1 < len(labels); i += 2 {
			f.Labels = append(f.Labels, labels[i])
		}
	}
	for i := 1; i < len(labels); i += 2 {
		sm.LabelValues = append(sm.LabelValues, labels[i])
	}
	f.Samples = append(f.Samples, sm)
}

// appendText writes f in the text exposition format: its HELP and TYPE
// lines, then one line per sample, name{k="v",...} value.
func (f *Family) appendText(b []byte) []byte {
	b = append(b, "# HELP "...)
	b = append(b, f.Name...)
	b = append(b, ' ')
	b = append(b, helpEscaper.Replace(f.Help)...)
	b = append(b, "\n# TYPE "...)
	b = append(b, f.Name...)
	b = append(b, ' ')
	b = append(b, f.Type...)
	b = append(b, '\n')
	for _, sm := range f.Samples {
		b = append(b, f.Name...)
		if len(f.Labels) > 0 {
			b = append(b, '{')
			for i, l := range f.Labels {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, l...)
				b = append(b, `="`...)
				b = append(b, labelEscaper.Replace(sm.LabelValues[i])...)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = appendValue(b, sm.Value)
		b = append(b, '\n')
	}
	return b
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// appendValue formats v as the format wants it: integers without an
// exponent, NaN and infinities by name.
func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.AppendInt(b, int64(v), 10)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
