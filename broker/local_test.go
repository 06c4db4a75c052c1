package broker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

func newBroker(t testing.TB, opts broker.Options) *broker.Broker {
	t.Helper()
	b, err := broker.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return b
}

func local(t testing.TB, b *broker.Broker) *broker.Local {
	t.Helper()
	l, err := b.Local(t.Name())
	require.NoError(t, err)
	return l
}

func next(t testing.TB, ch <-chan *broker.Message) *broker.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

func TestZeroOptionsBrokerPubSub(t *testing.T) {
	b := newBroker(t, broker.Options{})
	l := local(t, b)
	ch := make(chan *broker.Message, 10)
	_, err := l.ChanSubscribe("a.*", ch)
	require.NoError(t, err)
	require.NoError(t, l.Publish("a.b", []byte("hi")))
	m := next(t, ch)
	require.Equal(t, "a.b", string(m.Subject))
	require.Equal(t, "hi", string(m.Payload))
}

func TestLocalCallbackQueueAndAutoUnsubscribe(t *testing.T) {
	b := newBroker(t, broker.Options{})
	pub, sub := local(t, b), local(t, b)
	var q1, q2, all atomic.Int64
	var wg sync.WaitGroup
	wg.Add(200)
	_, err := sub.QueueSubscribe("work", "g", func(*broker.Message) { q1.Add(1); wg.Done() })
	require.NoError(t, err)
	_, err = sub.QueueSubscribe("work", "g", func(*broker.Message) { q2.Add(1); wg.Done() })
	require.NoError(t, err)
	limited, err := sub.Subscribe("work", func(*broker.Message) { all.Add(1) })
	require.NoError(t, err)
	sub.AutoUnsubscribe(limited, 5)
	for range 200 {
		require.NoError(t, pub.Publish("work", nil))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("queue group did not receive everything")
	}
	require.Equal(t, int64(200), q1.Load()+q2.Load())
	require.NotZero(t, q1.Load())
	require.NotZero(t, q2.Load())
	require.Eventually(t, func() bool { return all.Load() == 5 }, time.Second, time.Millisecond)
	require.Equal(t, 2, b.NumSubscriptions(), "the limited subscription removed itself")
}

func TestLocalRequestReplyAndNoResponders(t *testing.T) {
	b := newBroker(t, broker.Options{})
	svc, cli := local(t, b), local(t, b)
	_, err := svc.Subscribe("svc.upper", func(m *broker.Message) {
		out := make([]byte, len(m.Payload))
		for i, c := range m.Payload {
			out[i] = c &^ 0x20
		}
		require.NoError(t, svc.PublishMsg(&broker.Message{Subject: m.Reply, Header: m.Header, Payload: out}))
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := cli.RequestMsg(ctx, &broker.Message{Subject: []byte("svc.upper"), Header: []byte("NATS/1.0\r\nA: b\r\n\r\n"), Payload: []byte("abc")})
	require.NoError(t, err)
	require.Equal(t, "ABC", string(r.Payload))
	require.Equal(t, "NATS/1.0\r\nA: b\r\n\r\n", string(r.Header))

	_, err = cli.Request(ctx, "svc.none", nil)
	require.ErrorIs(t, err, broker.ErrNoResponders)

	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	_, err = svc.Subscribe("svc.silent", func(*broker.Message) {})
	require.NoError(t, err)
	_, err = cli.Request(short, "svc.silent", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLocalErrors(t *testing.T) {
	b := newBroker(t, broker.Options{MaxPayload: 4})
	l := local(t, b)
	require.ErrorIs(t, l.Publish("a.*", nil), broker.ErrInvalidSubject)
	require.ErrorIs(t, l.Publish("a..b", nil), broker.ErrInvalidSubject)
	require.ErrorIs(t, l.Publish("a", []byte("12345")), broker.ErrMaxPayload)
	_, err := l.Subscribe("a.>.b", func(*broker.Message) {})
	require.ErrorIs(t, err, broker.ErrInvalidSubject)
	l.Close(nil)
	require.ErrorIs(t, l.Publish("a", nil), broker.ErrSessionClosed)
	require.ErrorIs(t, l.Flush(context.Background()), broker.ErrSessionClosed)
}

func TestLocalPermissions(t *testing.T) {
	b := newBroker(t, broker.Options{})
	id := &auth.Identity{Name: "limited", Perms: &auth.Permissions{
		Publish:   &auth.SubjectPermission{Allow: []string{"out.>"}},
		Subscribe: &auth.SubjectPermission{Allow: []string{"in.*"}},
	}}
	l, err := b.LocalAs("limited", id)
	require.NoError(t, err)
	require.NoError(t, l.Publish("out.x", nil))
	require.ErrorIs(t, l.Publish("in.x", nil), broker.ErrPermPublish)
	_, err = l.Subscribe("in.x", func(*broker.Message) {})
	require.NoError(t, err)
	_, err = l.Subscribe("out.x", func(*broker.Message) {})
	require.ErrorIs(t, err, broker.ErrPermSubscribe)

	_, err = b.LocalAs("mqtt-only", &auth.Identity{ConnTypes: auth.ConnTypes(0).Add(auth.ConnMQTT)})
	require.ErrorIs(t, err, broker.ErrConnType)
}

func TestLocalSlowConsumerIsCut(t *testing.T) {
	b := newBroker(t, broker.Options{MaxPending: 64 << 10, MaxPayload: 1024})
	pub, slow, healthy := local(t, b), local(t, b), local(t, b)
	block := make(chan *broker.Message) // never read
	_, err := slow.ChanSubscribe("f", block)
	require.NoError(t, err)
	var got atomic.Int64
	_, err = healthy.Subscribe("f", func(*broker.Message) { got.Add(1) })
	require.NoError(t, err)
	payload := make([]byte, 1024)
	// Bursts well under the limit, each waited for, so only the reader
	// that never reads falls behind.
	for burst := range 10 {
		for range 32 {
			require.NoError(t, pub.Publish("f", payload))
		}
		want := int64(32 * (burst + 1))
		require.Eventually(t, func() bool { return got.Load() == want }, 5*time.Second, time.Millisecond)
	}
	require.Eventually(t, slow.Closed, 5*time.Second, time.Millisecond, "over max_pending: cut off")
	require.False(t, pub.Closed())
	require.False(t, healthy.Closed())
	require.GreaterOrEqual(t, b.Stats().SlowConsumers, int64(1))
}

func TestShutdownTwiceAndAfterClose(t *testing.T) {
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	l, err := b.Local("x")
	require.NoError(t, err)
	require.NoError(t, b.Shutdown(context.Background()))
	require.True(t, l.Closed(), "shutdown closes clients")
	require.ErrorIs(t, b.Shutdown(context.Background()), broker.ErrClosed)
	_, err = b.Local("late")
	require.ErrorIs(t, err, broker.ErrClosed)
}

func TestOptionsValidate(t *testing.T) {
	_, err := broker.New(broker.Options{MaxPayload: 2 << 20, MaxPending: 1 << 20})
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	require.ErrorContains(t, err, "max_payload")
}

func TestBrokerPublishSubscribe(t *testing.T) {
	b := newBroker(t, broker.Options{})
	got := make(chan string, 1)
	_, err := b.Subscribe("sys.>", func(m *broker.Message) { got <- string(m.Payload) })
	require.NoError(t, err)
	require.NoError(t, b.Publish(&broker.Message{Subject: []byte("sys.x"), Payload: []byte("p")}))
	select {
	case s := <-got:
		require.Equal(t, "p", s)
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery")
	}
}

// BenchmarkLocalPublish measures in-process publish → one subscriber
// callback: the broker's own cost with no socket.
func BenchmarkLocalPublish(b *testing.B) {
	br := newBroker(b, broker.Options{})
	pub, sub := local(b, br), local(b, br)
	var got atomic.Int64
	_, err := sub.Subscribe("bench.x", func(*broker.Message) { got.Add(1) })
	require.NoError(b, err)
	payload := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("bench.x", payload); err != nil {
			b.Fatal(err)
		}
	}
	for got.Load() < int64(b.N) {
		time.Sleep(time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkLocalPublishInline is in-process publish → one inline
// subscriber: routing cost alone, with no goroutine hand-off.
func BenchmarkLocalPublishInline(b *testing.B) {
	br := newBroker(b, broker.Options{})
	pub, sub := local(b, br), local(b, br)
	n := 0
	_, err := sub.SubscribeInline("bench.x", func(*broker.Message) { n++ })
	require.NoError(b, err)
	payload := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("bench.x", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.Equal(b, b.N, n)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func TestLocalInlineSubscriber(t *testing.T) {
	b := newBroker(t, broker.Options{})
	pub, sub := local(t, b), local(t, b)
	var got []string
	_, err := sub.SubscribeInline("in.>", func(m *broker.Message) { got = append(got, string(m.Payload)) })
	require.NoError(t, err)
	require.NoError(t, pub.Publish("in.a", []byte("1")))
	require.NoError(t, pub.Publish("in.b", []byte("2")))
	require.Equal(t, []string{"1", "2"}, got, "inline handlers run before Publish returns")
}
