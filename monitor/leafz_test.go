package monitor_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/monitor"
)

// TestLeafzWithoutRemotes: a broker without leaf node remotes answers
// /leafz as nats-server does (no leafs, an empty list), and /metrics has
// no leaf families. With remotes (Options.Leafz, Options.Leafs) the
// document and the families come from the leafnode service: see
// cmd/busbar TestLeafnodesConfigAndMonitoring against a real nats-server.
func TestLeafzWithoutRemotes(t *testing.T) {
	e := start(t, monitor.Options{})
	code, _ := get(t, e.url(monitor.LeafzPath))
	require.Equal(t, http.StatusOK, code)
	z := getJSON(t, e.url(monitor.LeafzPath))
	require.EqualValues(t, 0, z["leafnodes"])
	require.Equal(t, []any{}, z["leafs"])
	require.NotEmpty(t, z["server_id"])
	require.NotContains(t, metrics(t, e.url(monitor.MetricsPath)), monitor.MetricLeafUp)
}

// TestLeafMetrics: each remote gets one sample per family, labelled by its
// place in the configuration and its account.
func TestLeafMetrics(t *testing.T) {
	e := start(t, monitor.Options{Leafs: func() []monitor.LeafRemote {
		return []monitor.LeafRemote{
			{Account: "$G", Up: true, Reconnects: 2, InMsgs: 5, InBytes: 50, OutMsgs: 7, OutBytes: 70},
			{Account: "ACME"},
		}
	}})
	fams := metrics(t, e.url(monitor.MetricsPath))
	for name, want := range map[string][2]float64{
		monitor.MetricLeafUp:         {1, 0},
		monitor.MetricLeafReconnects: {2, 0},
		monitor.MetricLeafInMsgs:     {5, 0},
		monitor.MetricLeafInBytes:    {50, 0},
		monitor.MetricLeafOutMsgs:    {7, 0},
		monitor.MetricLeafOutBytes:   {70, 0},
	} {
		require.Contains(t, fams, name)
		v0, ok := value(fams[name], "remote", "0", "account", "$G")
		require.True(t, ok, name)
		v1, ok := value(fams[name], "remote", "1", "account", "ACME")
		require.True(t, ok, name)
		require.Equal(t, want, [2]float64{v0, v1}, name)
	}
}
