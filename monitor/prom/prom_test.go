package prom_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
	"github.com/busbar/busbar/monitor/prom"
	"github.com/busbar/busbar/natsproto"
)

// traffic starts a broker with a NATS listener and sends a few messages
// through it with nats.go, so the counters are not all zero.
func traffic(t *testing.T) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Options{ServerName: "prom-test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Shutdown(context.Background()) })
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	require.NoError(t, b.Start(nt))
	nc, err := nats.Connect("nats://"+nt.Addr().String(), nats.Timeout(5*time.Second))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("orders")
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, nc.Publish("orders", []byte("12345")))
	}
	for range 3 {
		_, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
	}
	return b
}

// figures are MQTT and store figures as a host would wire them.
var figures = monitor.Options{
	MQTT:  func() monitor.MQTTStats { return monitor.MQTTStats{Sessions: 2, Retained: 1} },
	Store: func() monitor.StoreStats { return monitor.StoreStats{Bytes: 4096, Commits: 7} },
}

// TestCollectorInHostRegistry: a host registers the collector in its own
// registry; every family and value monitor's text exposition has, under
// the same names, types and labels, comes out of the registry.
func TestCollectorInHostRegistry(t *testing.T) {
	mon := monitor.New(traffic(t), figures)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom.NewCollector(mon))
	got, err := reg.Gather()
	require.NoError(t, err)
	byName := map[string]*dto.MetricFamily{}
	for _, f := range got {
		byName[f.GetName()] = f
	}
	want := parseText(t, string(mon.WriteMetrics(nil)))
	require.NotEmpty(t, want)
	for name, wf := range want {
		gf, ok := byName[name]
		require.True(t, ok, "family %s missing from the registry", name)
		require.Equal(t, wf.GetType(), gf.GetType(), name)
		require.Equal(t, wf.GetHelp(), gf.GetHelp(), name)
		if name == monitor.MetricInfo || name == monitor.MetricStartTime {
			continue
		}
		require.Equal(t, samples(wf), samples(gf), name)
	}
	require.Equal(t, 3.0, samples(byName[monitor.MetricInMessages])["transport=nats"])
	require.Equal(t, 2.0, samples(byName[monitor.MetricMQTTSessions])[""])
}

// TestHandlerServesGoAndProcessMetrics: the standalone /metrics (the
// Handler as monitor.Options.Metrics) adds go_* and process_* to
// busbar's figures, in the text format Prometheus scrapes.
func TestHandlerServesGoAndProcessMetrics(t *testing.T) {
	o := figures
	o.Metrics = prom.Handler
	srv := httptest.NewServer(monitor.New(traffic(t), o))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + monitor.MetricsPath)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	fams := parseText(t, string(body))
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_open_fds",
		monitor.MetricInMessages, monitor.MetricConnections, monitor.MetricStoreFsyncs} {
		require.Contains(t, fams, name)
	}
	require.Equal(t, 3.0, samples(fams[monitor.MetricInMessages])["transport=nats"])
}

// TestEmbeddersDoNotLinkClientGolang: only this package (and what
// imports it to be the standalone busbar) links the Prometheus client
// library; the packages an embedder builds a broker from do not.
func TestEmbeddersDoNotLinkClientGolang(t *testing.T) {
	pkgs := []string{"broker", "auth", "natsproto", "mqtt", "websocket", "monitor", "config", "leafnode", "busbartest"}
	args := []string{"list", "-deps"}
	for _, p := range pkgs {
		args = append(args, "github.com/busbar/busbar/"+p)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.NotContains(t, string(out), "github.com/prometheus/client_golang")
}

func parseText(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	require.NoError(t, err)
	return fams
}

// samples maps each sample's labels ("k=v,k=v", sorted as exposed) to
// its value.
func samples(f *dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range f.GetMetric() {
		var ls []string
		for _, l := range m.GetLabel() {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		v := m.GetGauge().GetValue()
		if f.GetType() == dto.MetricType_COUNTER {
			v = m.GetCounter().GetValue()
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}
