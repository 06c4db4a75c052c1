package broker_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// ldServer is a broker with a NATS listener for the lame duck tests.
func ldServer(t *testing.T, opts broker.Options) (*broker.Broker, string) {
	t.Helper()
	b, err := broker.New(opts)
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	require.NoError(t, nt.Listen())
	require.NoError(t, b.Start(nt))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b, nt.Addr().String()
}

func runLameDuck(ctx context.Context, b *broker.Broker) chan error {
	done := make(chan error, 1)
	go func() { done <- b.LameDuck(ctx) }()
	return done
}

func waitDone(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("LameDuck did not return")
	}
}

func TestLameDuckOptions(t *testing.T) {
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, b.Options().LameDuckDuration)
	require.Equal(t, 10*time.Second, b.Options().LameDuckGracePeriod)
	b, err = broker.New(broker.Options{LameDuckDuration: 4 * time.Second})
	require.NoError(t, err)
	require.Equal(t, 2*time.Second, b.Options().LameDuckGracePeriod, "a short duration halves the default grace")
	_, err = broker.New(broker.Options{LameDuckDuration: 30 * time.Second, LameDuckGracePeriod: 30 * time.Second})
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	require.ErrorContains(t, err, "should be strictly lower than lame duck duration")
}

// TestLameDuckRefusesNewConnections: the listener stops accepting as
// soon as lame duck mode begins, while connected clients still run (the
// grace period), and the broker is not shut down yet.
func TestLameDuckRefusesNewConnections(t *testing.T) {
	b, addr := ldServer(t, broker.Options{LameDuckDuration: 20 * time.Second, LameDuckGracePeriod: 10 * time.Second})
	nc, err := nats.Connect("nats://"+addr, nats.NoReconnect())
	require.NoError(t, err)
	defer nc.Close()
	ldm := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nc2, err := nats.Connect("nats://"+addr, nats.NoReconnect(), nats.LameDuckModeHandler(func(*nats.Conn) { ldm <- struct{}{} }))
	require.NoError(t, err)
	defer nc2.Close()

	done := runLameDuck(ctx, b)
	select {
	case <-ldm:
	case <-time.After(5 * time.Second):
		t.Fatal("no lame duck notice")
	}
	require.True(t, b.LameDuckMode())
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
	}
	require.Error(t, err, "a new connection was accepted in lame duck mode")
	require.False(t, b.Closed())
	require.True(t, nc.IsConnected(), "clients stay during the grace period")
	require.NoError(t, nc.Flush())

	require.ErrorIs(t, b.LameDuck(ctx), broker.ErrLameDuck)
	cancel() // the rest is closed at once, then Shutdown
	waitDone(t, done)
	require.True(t, b.Closed())
	require.ErrorIs(t, b.LameDuck(context.Background()), broker.ErrClosed)
}

// TestLameDuckSpreadsCloses: ten clients are not closed at once but one
// after another, oldest first, over the duration minus the grace period;
// an in-process client stays until the final Shutdown.
func TestLameDuckSpreadsCloses(t *testing.T) {
	b, addr := ldServer(t, broker.Options{LameDuckDuration: 1 * time.Second, LameDuckGracePeriod: 50 * time.Millisecond})
	const n = 10
	var mu sync.Mutex
	closedAt := make([]time.Time, n)
	local, err := b.Local("host")
	require.NoError(t, err)
	localOpen := make(chan bool, 1)
	seen := make(chan int, n)
	for i := 0; i < n; i++ {
		nc, err := nats.Connect("nats://"+addr, nats.NoReconnect(),
			nats.DisconnectErrHandler(func(*nats.Conn, error) {
				mu.Lock()
				closedAt[i] = time.Now()
				mu.Unlock()
				seen <- i
				if i == 0 { // the first close: nine more to go before Shutdown
					localOpen <- !local.Closed()
				}
			}))
		require.NoError(t, err)
		defer nc.Close()
	}
	start := time.Now()
	waitDone(t, runLameDuck(context.Background(), b))
	require.True(t, local.Closed(), "Shutdown closes in-process clients")
	select {
	case open := <-localOpen:
		require.True(t, open, "the in-process client was closed with the network ones")
	case <-time.After(5 * time.Second):
		t.Fatal("the first client saw no close")
	}
	for range n {
		select {
		case <-seen:
		case <-time.After(5 * time.Second):
			t.Fatal("a client saw no close")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, at := range closedAt {
		require.False(t, at.IsZero(), "client %d was not closed", i)
	}
	times := slices.Clone(closedAt)
	slices.SortFunc(times, time.Time.Compare)
	first, last := times[0], times[n-1]
	distinct := 1
	for i := 1; i < len(times); i++ {
		if times[i].Sub(times[i-1]) >= 20*time.Millisecond {
			distinct++
		}
	}
	require.GreaterOrEqual(t, distinct, 3, "closes were not spread: %v", closedAt)
	require.True(t, closedAt[0].Before(closedAt[n-1]), "the oldest client was not closed first")
	require.GreaterOrEqual(t, last.Sub(first), 200*time.Millisecond, "closes bunched together")
	require.True(t, first.Sub(start) >= 50*time.Millisecond, "a client was closed within the grace period")
}

// TestLameDuckReconnectsElsewhere: nats.go given two brokers moves to the
// second when the first is lame-ducked, and its subscription works there.
func TestLameDuckReconnectsElsewhere(t *testing.T) {
	b1, addr1 := ldServer(t, broker.Options{LameDuckDuration: 2 * time.Second, LameDuckGracePeriod: 100 * time.Millisecond})
	b2, addr2 := ldServer(t, broker.Options{})
	reconnected := make(chan string, 1)
	nc, err := nats.Connect("nats://"+addr1+",nats://"+addr2, nats.DontRandomize(),
		nats.ReconnectWait(20*time.Millisecond), nats.MaxReconnects(-1),
		nats.ReconnectHandler(func(c *nats.Conn) { reconnected <- c.ConnectedUrl() }))
	require.NoError(t, err)
	defer nc.Close()
	require.Equal(t, b1.ID(), nc.ConnectedServerId())
	sub, err := nc.SubscribeSync("orders.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	waitDone(t, runLameDuck(context.Background(), b1))
	select {
	case url := <-reconnected:
		require.Equal(t, "nats://"+addr2, url)
	case <-time.After(5 * time.Second):
		t.Fatal("nats.go did not reconnect to the other broker")
	}
	require.Equal(t, b2.ID(), nc.ConnectedServerId())
	require.NoError(t, nc.Flush()) // the subscription is replayed before the flush's PING
	pub, err := nats.Connect("nats://" + addr2)
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.Publish("orders.new", []byte("after")))
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "after", string(m.Data))
}
