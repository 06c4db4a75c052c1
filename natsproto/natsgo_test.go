package natsproto_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// server is one broker with a NATS listener on a free loopback port.
type server struct {
	b *broker.Broker
	t *natsproto.Transport
}

func startServer(t testing.TB, opts broker.Options) *server {
	t.Helper()
	return startServerAt(t, opts, 0)
}

func startServerAt(t testing.TB, opts broker.Options, port int) *server {
	t.Helper()
	b, err := broker.New(opts)
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1", Port: port})
	require.NoError(t, err)
	require.NoError(t, nt.Listen())
	require.NoError(t, b.Start(nt))
	s := &server{b: b, t: nt}
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

func (s *server) shutdown(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
		t.Errorf("shutdown: %v", err)
	}
}

func (s *server) url() string { return "nats://" + s.t.Addr().String() }

// dialer connects nats.go to a server one way or another: the same test
// body runs over TCP and in-process (STYLE.md habit 10).
type dialer func(t testing.TB, s *server, opts ...nats.Option) *nats.Conn

var dialers = map[string]dialer{
	"tcp": func(t testing.TB, s *server, opts ...nats.Option) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(s.url(), opts...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	},
	"inprocess": func(t testing.TB, s *server, opts ...nats.Option) *nats.Conn {
		t.Helper()
		opts = append(opts, nats.InProcessServer(natsproto.InProcess(s.b)))
		nc, err := nats.Connect("", opts...)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		return nc
	},
}

func runBoth(t *testing.T, f func(t *testing.T, s *server, dial dialer)) {
	for name, d := range dialers {
		t.Run(name, func(t *testing.T) {
			f(t, startServer(t, broker.Options{}), d)
		})
	}
}

func recv(t testing.TB, sub *nats.Subscription) *nats.Msg {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	return m
}

func TestNatsGoPubSubWildcards(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		exact, _ := nc.SubscribeSync("a.b.c")
		star, _ := nc.SubscribeSync("a.*.c")
		full, _ := nc.SubscribeSync("a.>")
		other, _ := nc.SubscribeSync("b.>")
		require.NoError(t, nc.Flush())
		require.NoError(t, nc.Publish("a.b.c", []byte("hello")))
		require.NoError(t, nc.Publish("a.x", []byte("two")))
		require.NoError(t, nc.Flush())
		require.Equal(t, "hello", string(recv(t, exact).Data))
		require.Equal(t, "hello", string(recv(t, star).Data))
		require.Equal(t, "hello", string(recv(t, full).Data))
		require.Equal(t, "two", string(recv(t, full).Data))
		for _, sub := range []*nats.Subscription{exact, star, other} {
			_, err := sub.NextMsg(50 * time.Millisecond)
			require.ErrorIs(t, err, nats.ErrTimeout, sub.Subject)
		}
	})
}

func TestNatsGoQueueGroupSpreadsLoad(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		const members, total = 4, 400
		var counts [members]atomic.Int64
		var wg sync.WaitGroup
		wg.Add(total)
		for i := range members {
			_, err := nc.QueueSubscribe("work", "q", func(*nats.Msg) { counts[i].Add(1); wg.Done() })
			require.NoError(t, err)
		}
		plain, _ := nc.SubscribeSync("work")
		require.NoError(t, nc.Flush())
		for range total {
			require.NoError(t, nc.Publish("work", []byte("x")))
		}
		require.NoError(t, nc.Flush())
		waitGroup(t, &wg)
		sum := int64(0)
		for i := range members {
			n := counts[i].Load()
			sum += n
			require.Greater(t, n, int64(total/members/4), "member %d got %d of %d: not spread", i, n, total)
		}
		require.Equal(t, int64(total), sum, "each message exactly once in the group")
		n, _, _ := plain.Pending()
		require.Equal(t, total, n, "a plain subscriber still gets everything")
	})
}

func waitGroup(t testing.TB, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for deliveries")
	}
}

func TestNatsGoRequestReplyHeadersNoResponders(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		_, err := nc.Subscribe("svc.echo", func(m *nats.Msg) {
			r := nats.NewMsg(m.Reply)
			r.Header.Set("X-Echo", m.Header.Get("X-In"))
			r.Data = append([]byte("re:"), m.Data...)
			_ = m.RespondMsg(r)
		})
		require.NoError(t, err)
		req := nats.NewMsg("svc.echo")
		req.Header.Set("X-In", "v1")
		req.Data = []byte("ping")
		resp, err := nc.RequestMsg(req, 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, "re:ping", string(resp.Data))
		require.Equal(t, "v1", resp.Header.Get("X-Echo"))

		_, err = nc.Request("nobody.home", []byte("?"), 5*time.Second)
		require.ErrorIs(t, err, nats.ErrNoResponders)
	})
}

func TestNatsGoMaxPayload(t *testing.T) {
	s := startServer(t, broker.Options{MaxPayload: 1024})
	errs := make(chan error, 4)
	nc := dialers["tcp"](t, s, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }), nats.NoReconnect())
	require.Equal(t, int64(1024), nc.MaxPayload())
	require.ErrorIs(t, nc.Publish("big", make([]byte, 2000)), nats.ErrMaxPayload, "nats.go checks INFO max_payload")
}

func TestNatsGoAutoUnsubscribe(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		sub, err := nc.SubscribeSync("n")
		require.NoError(t, err)
		require.NoError(t, sub.AutoUnsubscribe(3))
		require.NoError(t, nc.Flush())
		for i := range 10 {
			require.NoError(t, nc.Publish("n", []byte{byte(i)}))
		}
		require.NoError(t, nc.Flush())
		for i := range 3 {
			require.Equal(t, []byte{byte(i)}, recv(t, sub).Data)
		}
		_, err = sub.NextMsg(100 * time.Millisecond)
		require.Error(t, err)
		require.Eventually(t, func() bool { return s.b.NumSubscriptions() == 0 }, 2*time.Second, 10*time.Millisecond,
			"the server dropped the subscription after 3 deliveries")
	})
}

func TestNatsGoDrain(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		var got atomic.Int64
		_, err := nc.Subscribe("d", func(*nats.Msg) { time.Sleep(time.Millisecond); got.Add(1) })
		require.NoError(t, err)
		pub := dial(t, s)
		require.NoError(t, nc.Flush())
		for range 50 {
			require.NoError(t, pub.Publish("d", nil))
		}
		require.NoError(t, pub.Flush())
		require.Eventually(t, func() bool {
			n, _ := nc.Stats().InMsgs, 0
			return n == 50
		}, 5*time.Second, 5*time.Millisecond)
		require.NoError(t, nc.Drain())
		require.Eventually(t, nc.IsClosed, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, int64(50), got.Load(), "drain handles every message already received")
	})
}

func TestNatsGoReconnectAfterRestart(t *testing.T) {
	s := startServer(t, broker.Options{})
	addr := s.t.Addr().(*net.TCPAddr)
	reconnected := make(chan struct{}, 1)
	nc := dialers["tcp"](t, s, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	sub, err := nc.SubscribeSync("after")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	s.shutdown(t)
	s2 := startServerAt(t, broker.Options{}, addr.Port)
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("nats.go did not reconnect")
	}
	require.NoError(t, nc.Flush())
	require.Equal(t, 1, s2.b.NumSubscriptions(), "nats.go resubscribed on the new broker")
	require.NoError(t, nc.Publish("after", []byte("back")))
	require.Equal(t, "back", string(recv(t, sub).Data))
}

func TestNatsGoSlowConsumerCutHealthyUnaffected(t *testing.T) {
	s := startServer(t, broker.Options{MaxPending: 256 << 10, MaxPayload: 64 << 10})
	// The slow consumer: a raw socket that subscribes and never reads.
	raw, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write([]byte("CONNECT {\"verbose\":false}\r\nSUB firehose 1\r\nPING\r\n"))
	require.NoError(t, err)
	readUntil(t, raw, "PONG")

	healthy := dialers["tcp"](t, s)
	var got atomic.Int64
	_, err = healthy.Subscribe("firehose", func(*nats.Msg) { got.Add(1) })
	require.NoError(t, err)
	require.NoError(t, healthy.Flush())

	pub := dialers["tcp"](t, s)
	payload := make([]byte, 8<<10)
	const burst, total = 4, 2000 // 16 MiB: far past the slow consumer's 256 KiB limit
	for sent := burst; sent <= total; sent += burst {
		// Bursts of 32 KiB, each waited for, so only the reader that never
		// reads falls behind. (Pending counts bytes until the writer
		// returns from the write, which may be after the reader has them.)
		for range burst {
			require.NoError(t, pub.Publish("firehose", payload))
		}
		require.NoError(t, pub.Flush())
		require.Eventuallyf(t, func() bool { return got.Load() == int64(sent) }, 10*time.Second, time.Millisecond,
			"healthy subscriber behind after %d sent: got %d, broker in %d slow %d", sent, got.Load(), s.b.Stats().InMsgs, s.b.Stats().SlowConsumers)
	}
	require.Eventually(t, func() bool { return s.b.Stats().SlowConsumers >= 1 }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return s.b.NumConnections() == 2 }, 5*time.Second, 10*time.Millisecond,
		"the slow consumer was disconnected; publisher and healthy subscriber stay")
	require.True(t, pub.IsConnected())
}

func readUntil(t testing.TB, c net.Conn, want string) string {
	t.Helper()
	var sb strings.Builder
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for !strings.Contains(sb.String(), want) {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", want, err, sb.String())
		}
	}
	return sb.String()
}

func TestTwoBrokersInOneProcess(t *testing.T) {
	s1 := startServer(t, broker.Options{ServerName: "one"})
	s2 := startServer(t, broker.Options{ServerName: "two"})
	nc1 := dialers["tcp"](t, s1)
	nc2 := dialers["tcp"](t, s2)
	require.Equal(t, "one", nc1.ConnectedServerName())
	require.Equal(t, "two", nc2.ConnectedServerName())
	sub2, _ := nc2.SubscribeSync("x")
	sub1, _ := nc1.SubscribeSync("x")
	require.NoError(t, nc1.Flush())
	require.NoError(t, nc2.Flush())
	require.NoError(t, nc1.Publish("x", []byte("from one")))
	require.NoError(t, nc1.Flush())
	require.Equal(t, "from one", string(recv(t, sub1).Data))
	_, err := sub2.NextMsg(100 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout, "brokers share nothing")
	s1.shutdown(t)
	require.NoError(t, nc2.Publish("x", []byte("two lives")))
	require.Equal(t, "two lives", string(recv(t, sub2).Data))
}

func TestNatsGoEchoOff(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s, nats.NoEcho())
		other := dial(t, s)
		own, _ := nc.SubscribeSync("e")
		theirs, _ := other.SubscribeSync("e")
		require.NoError(t, nc.Flush())
		require.NoError(t, other.Flush())
		require.NoError(t, nc.Publish("e", []byte("me")))
		require.NoError(t, nc.Flush())
		require.Equal(t, "me", string(recv(t, theirs).Data))
		_, err := own.NextMsg(100 * time.Millisecond)
		require.ErrorIs(t, err, nats.ErrTimeout, "echo=false: no copy of my own message")
	})
}

func TestNatsGoLargeAndSplitPayloads(t *testing.T) {
	runBoth(t, func(t *testing.T, s *server, dial dialer) {
		nc := dial(t, s)
		sub, _ := nc.SubscribeSync("big")
		require.NoError(t, nc.Flush())
		for _, n := range []int{0, 1, 4095, 4096, 70000, 1 << 20} {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i * 7)
			}
			require.NoError(t, nc.Publish("big", p))
			m := recv(t, sub)
			require.Equal(t, p, m.Data, fmt.Sprintf("payload of %d bytes", n))
		}
	})
}

// TestInProcessRefusedQuickly: a refused in-process nats.go client gets
// the -ERR at once (the pipe is synchronous: the server keeps reading
// until its error is written).
func TestInProcessRefusedQuickly(t *testing.T) {
	s := startServer(t, broker.Options{Authenticator: auth.Token("t")})
	start := time.Now()
	_, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(s.b)), nats.Token("wrong"), nats.NoReconnect())
	require.ErrorIs(t, err, nats.ErrAuthorization)
	require.Less(t, time.Since(start), 5*time.Second, "refusal waited for a write deadline")
}
