package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
)

// TestLameDuckKeysReachBroker: lame_duck_duration and
// lame_duck_grace_period become the broker's options; absent, the broker
// takes nats-server's defaults (2m, 10s).
func TestLameDuckKeysReachBroker(t *testing.T) {
	for _, tc := range []struct {
		name, conf      string
		duration, grace time.Duration
	}{
		{"set", "lame_duck_duration: \"45s\"\nlame_duck_grace_period: \"5s\"\n", 45 * time.Second, 5 * time.Second},
		{"seconds", "lame_duck_duration: 40\nlame_duck_grace_period: 2\n", 40 * time.Second, 2 * time.Second},
		{"defaults", "", broker.DefaultLameDuckDuration, broker.DefaultLameDuckGracePeriod},
		{"grace only", "lame_duck_grace_period: \"1m\"\n", 2 * time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.conf), "ld.conf")
			require.NoError(t, err)
			opts, err := cfg.BrokerOptions(nil)
			require.NoError(t, err)
			b, err := broker.New(opts)
			require.NoError(t, err)
			require.Equal(t, tc.duration, b.Options().LameDuckDuration)
			require.Equal(t, tc.grace, b.Options().LameDuckGracePeriod)
		})
	}
	_, err := Parse([]byte("lame_duck_grace_period: \"3m\"\n"), "ld.conf")
	require.ErrorContains(t, err, "ld.conf:1:1: lame duck grace period (3m0s) should be strictly lower than lame duck duration (2m0s)")
}
