package config_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/natsproto"
)

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "reload.conf")
	require.NoError(t, err)
	return cfg
}

// TestReloadGoAPI drives config.Reload on a broker built from a parsed
// configuration, with nats.go connected in-process.
func TestReloadGoAPI(t *testing.T) {
	cur := mustParse(t, `
authorization {
  users: [
    {user: a, password: pa, permissions: {subscribe: ">", publish: ">"}}
    {user: b, password: pb}
  ]
}
max_subscriptions: 10
`)
	opts, err := cur.BrokerOptions(nil)
	require.NoError(t, err)
	b, err := broker.New(opts)
	require.NoError(t, err)
	defer b.Shutdown(context.Background())

	errs := make(chan error, 8)
	a, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo("a", "pa"), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	require.NoError(t, err)
	defer a.Close()
	bClosed := make(chan struct{})
	bc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo("b", "pb"), nats.NoReconnect(),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
		nats.ClosedHandler(func(*nats.Conn) { close(bClosed) }))
	require.NoError(t, err)
	defer bc.Close()
	_, err = a.SubscribeSync("private.x")
	require.NoError(t, err)
	require.NoError(t, a.Flush())

	next := mustParse(t, `
authorization {
  users: [
    {user: a, password: pa, permissions: {subscribe: "public.>", publish: ">"}}
  ]
}
max_subscriptions: 1
`)
	require.NoError(t, config.Reload(b, cur, next, nil))
	require.Equal(t, 1, b.Options().MaxSubscriptions)
	select {
	case <-bClosed:
	case <-time.After(5 * time.Second):
		t.Fatal("b was not closed")
	}
	select {
	case err := <-errs:
		require.Contains(t, err.Error(), `Permissions Violation for Subscription to "private.x"`)
	case <-time.After(5 * time.Second):
		t.Fatal("a was not told its subscription was removed")
	}
	_, err = a.SubscribeSync("public.1")
	require.NoError(t, err)
	_, err = a.SubscribeSync("public.2")
	require.NoError(t, err)
	select {
	case err := <-errs:
		require.ErrorIs(t, err, nats.ErrMaxSubscriptionsExceeded)
	case <-time.After(5 * time.Second):
		t.Fatal("max_subscriptions from the reload did not apply")
	}

	// A change that needs a restart refuses the whole reload, with its
	// position.
	moved := mustParse(t, "port: 4999\nauthorization { users: [{user: c, password: pc}] }\n")
	err = config.Reload(b, next, moved, nil)
	require.EqualError(t, err, "reload.conf:1:1: listen: cannot be changed by a reload (restart busbar); the running configuration is kept")
	require.Equal(t, 1, b.Options().MaxSubscriptions)
	require.False(t, a.IsClosed())
}
