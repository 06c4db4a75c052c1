package config

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
)

// TestMaxClosedClientsReachesBroker: max_closed_clients sizes /connz's
// closed-connection history (nats-server's key and default, 10000).
func TestMaxClosedClientsReachesBroker(t *testing.T) {
	for conf, want := range map[string]int{
		"max_closed_clients: 50\n": 50,
		"max_closed_clients: -1\n": -1, // none kept
		"":                         broker.DefaultMaxClosedClients,
	} {
		cfg, err := Parse([]byte(conf), "c.conf")
		require.NoError(t, err, conf)
		require.Empty(t, cfg.Warnings, conf)
		opts, err := cfg.BrokerOptions(nil)
		require.NoError(t, err)
		b, err := broker.New(opts)
		require.NoError(t, err)
		require.Equal(t, want, b.Options().MaxClosedClients, conf)
	}
	_, err := Parse([]byte("max_closed_clients: -2\n"), "c.conf")
	require.Error(t, err)
}
