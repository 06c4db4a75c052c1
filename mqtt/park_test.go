package mqtt_test

import (
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/transport"
)

// waitParked waits until n of the broker's connections are parked.
func waitParked(t testing.TB, e *env, n int) {
	t.Helper()
	testpeer.WaitUntil(t, fmt.Sprintf("%d connections parked", n), func() bool { return transport.Parked(e.b) == n })
}

// TestMQTTParkedKeepAlive: an idle MQTT connection parks (no goroutine on
// the broker); with keep alive 1 s, one that pings keeps living across
// several keep-alive windows, parked between its pings, and one that goes
// silent is closed once 1.5 × keep alive has passed, as an unparked one
// is [MQTT-3.1.2-24].
func TestMQTTParkedKeepAlive(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connections park on Linux only")
	}
	old := transport.SetParkAfter(50 * time.Millisecond)
	t.Cleanup(func() { transport.SetParkAfter(old) })
	e := start(t, broker.Options{}, mqtt.Options{})
	pinger := dialRaw(t, e)
	pinger.send(0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 1, 0, 1, 'p') // keep alive 1 s
	pinger.connack()
	waitParked(t, e, 1)

	silent := dialRaw(t, e)
	silent.send(0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 1, 0, 1, 's')
	silent.connack()
	started := time.Now()
	waitParked(t, e, 2)
	closedAfter := make(chan time.Duration, 1)
	go func() {
		_ = silent.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.ReadAll(silent.br)
		if err != nil {
			closedAfter <- 0 // not closed: a timeout
			return
		}
		closedAfter <- time.Since(started)
	}()
	for time.Since(started) < 3*time.Second {
		time.Sleep(400 * time.Millisecond) // the client's pace, within the keep alive
		pinger.send(0xC0, 0)               // PINGREQ
		h, _ := pinger.read()
		require.Equal(t, byte(0xD0), h, "PINGRESP")
	}
	d := <-closedAfter
	require.NotZero(t, d, "the silent connection was not closed")
	require.Greater(t, d, time.Second, "not before the keep alive")
	waitParked(t, e, 1) // the pinger, parked again
	pinger.send(0xC0, 0)
	h, _ := pinger.read()
	require.Equal(t, byte(0xD0), h, "PINGRESP after 3 s")
}
