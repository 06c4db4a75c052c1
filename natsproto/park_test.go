package natsproto_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/transport"
)

// TestNatsGoIdleConnectionsPark: idle nats.go connections park (no
// goroutine on the broker); a parked one publishes, flushes (PING/PONG),
// receives what another client publishes to it, and parks again;
// Shutdown ends parked connections and leaves no goroutine behind.
func TestNatsGoIdleConnectionsPark(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	old := transport.SetParkAfter(50 * time.Millisecond)
	t.Cleanup(func() { transport.SetParkAfter(old) })
	before := runtime.NumGoroutine()
	s := startServer(t, broker.Options{})
	idle, err := nats.Connect(s.url(), nats.NoReconnect())
	require.NoError(t, err)
	other, err := nats.Connect(s.url(), nats.NoReconnect())
	require.NoError(t, err)
	sub, err := idle.SubscribeSync("park.>")
	require.NoError(t, err)
	require.NoError(t, idle.Flush())
	parked := func(n int) func() bool { return func() bool { return transport.Parked(s.b) == n } }
	testpeer.WaitUntil(t, "both parked", parked(2))

	for i := range 3 {
		require.NoError(t, idle.Publish("from.idle", []byte("hi")))
		require.NoError(t, idle.Flush())
		testpeer.WaitUntil(t, "parked after its publish", parked(2))
		require.NoError(t, other.Publish("park.x", []byte{byte('0' + i)}))
		m := recv(t, sub)
		require.Equal(t, []byte{byte('0' + i)}, m.Data)
		testpeer.WaitUntil(t, "parked after the delivery", parked(2))
	}
	rtt, err := idle.RTT()
	require.NoError(t, err)
	require.Positive(t, rtt)

	s.shutdown(t)
	require.Zero(t, s.b.NumConnections())
	require.Zero(t, transport.Parked(s.b))
	idle.Close()
	other.Close()
	testpeer.WaitUntil(t, "no goroutine left", func() bool { return runtime.NumGoroutine() <= before })
}
