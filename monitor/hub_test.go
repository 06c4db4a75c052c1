package monitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/monitor"
)

// TestHubFigures: with MQTT state in a hub, /varz says where it lives and
// /metrics carries the hub's readiness, round trip and errors.
func TestHubFigures(t *testing.T) {
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	mon := monitor.New(b, monitor.Options{
		MQTT: func() monitor.MQTTStats { return monitor.MQTTStats{Sessions: 2} },
		Hub: func() monitor.HubStats {
			return monitor.HubStats{Domain: "hub", Ready: true, RTT: 1500 * time.Microsecond, Writes: 7, WriteErrors: 1, Claims: 2, Takeovers: 1}
		},
	})
	v := mon.Varz()
	require.Equal(t, "hub:hub", v.MQTTState)
	require.NotNil(t, v.HubStats)
	require.Equal(t, int64(7), v.HubStats.Writes)

	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(mon.WriteMetrics(nil))))
	require.NoError(t, err)
	for metric, want := range map[string]float64{
		monitor.MetricHubReady: 1, monitor.MetricHubRTT: 0.0015, monitor.MetricHubWrites: 7,
		monitor.MetricHubWriteErrors: 1, monitor.MetricHubClaims: 2, monitor.MetricHubTakeovers: 1,
	} {
		f := fams[metric]
		require.NotNil(t, f, metric)
		require.Equal(t, want, f.GetMetric()[0].GetGauge().GetValue()+f.GetMetric()[0].GetCounter().GetValue(), metric)
	}

	local := monitor.New(b, monitor.Options{MQTT: func() monitor.MQTTStats { return monitor.MQTTStats{} }})
	require.Equal(t, "local", local.Varz().MQTTState)
	require.Nil(t, local.Varz().HubStats)
}
