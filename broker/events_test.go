package broker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// TestWatchConnsAndInternal: an admitted client is announced when it
// comes and goes (with its final record); busbar's own internal clients
// are neither announced nor listed as connections, and act in their
// account.
func TestWatchConnsAndInternal(t *testing.T) {
	b := newBroker(t, broker.Options{})
	events := make(chan broker.ConnEvent, 8)
	stop := b.WatchConns(func(ev broker.ConnEvent) { events <- ev })

	in, err := b.Internal("system", "SYS")
	require.NoError(t, err)
	got := make(chan string, 1)
	_, err = in.Subscribe("ping", func(m *broker.Message) { got <- string(m.Payload) })
	require.NoError(t, err)
	for _, c := range b.Snapshot(false).Conns {
		require.True(t, c.Detached, "an internal client is not a connection")
	}
	require.Zero(t, b.NumConnections())

	l, err := b.LocalAs("app", &auth.Identity{Name: "app", Account: "SYS"})
	require.NoError(t, err)
	ev := <-events
	require.Nil(t, ev.Closed)
	snap := ev.Session.ConnSnapshot()
	require.Equal(t, "SYS", snap.Account)
	require.Equal(t, "app", snap.Info.Identity.Name)
	require.NoError(t, l.Publish("ping", []byte("hi")))
	require.Equal(t, "hi", <-got, "the internal client is in its account")
	l.Close(nil)
	ev = <-events
	require.NotNil(t, ev.Closed)
	require.Equal(t, int64(1), ev.Closed.InMsgs)

	stop()
	l2, err := b.LocalAs("again", &auth.Identity{Name: "again"})
	require.NoError(t, err)
	l2.Close(nil)
	require.Empty(t, events, "stop removed the watcher")
	require.Empty(t, events)
}
