package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// TestClosedHistoryBoundedByBytes: clients with many long subscriptions
// leave records of bounded size (issue 16, finding 5: 5 clients × 20,000
// subscriptions with 1 KB subjects kept ~160 MB after they left): a record
// keeps its first ClosedSubsKept subscriptions and counts the rest, and
// the history keeps MaxClosedBytes at most, dropping the oldest.
func TestClosedHistoryBoundedByBytes(t *testing.T) {
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Shutdown(t.Context()) })
	long := strings.Repeat("s", 1000)
	const clients, subs = 5, 4000
	for c := range clients {
		nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)))
		require.NoError(t, err)
		for i := range subs {
			_, err := nc.Subscribe(fmt.Sprintf("%s.%d.%05d", long, c, i), func(*nats.Msg) {})
			require.NoError(t, err)
		}
		require.NoError(t, nc.Flush())
		nc.Close()
	}
	require.Eventually(t, func() bool { return len(b.ClosedConns()) == clients }, 10*time.Second, 10*time.Millisecond)
	for _, cc := range b.ClosedConns() {
		require.Equal(t, subs, cc.NumSubs, "every subscription counted")
		require.Len(t, cc.Subs, broker.ClosedSubsKept, "the first ones kept")
		require.True(t, strings.HasSuffix(cc.Subs[0].Subject, ".00000"), "kept in subject order: %s", cc.Subs[0].Subject[1000:])
	}
	per := b.ClosedBytes() / clients
	t.Logf("closed history: %d bytes for %d clients of %d subscriptions of ~1 KB (%d per record; the subjects alone were %d)",
		b.ClosedBytes(), clients, subs, per, subs*(len(long)+8))
	require.Less(t, per, (broker.ClosedSubsKept+4)*(len(long)+80), "a record holds about ClosedSubsKept subjects")

	// Many such records: the history stays within MaxClosedBytes, the
	// newest kept.
	for range 700 {
		l, err := b.Local("big")
		require.NoError(t, err)
		for i := range broker.ClosedSubsKept {
			_, err := l.Subscribe(fmt.Sprintf("%s.%d", long, i), func(*broker.Message) {})
			require.NoError(t, err)
		}
		l.Close(nil)
	}
	require.LessOrEqual(t, b.ClosedBytes(), broker.MaxClosedBytes)
	got := b.ClosedConns()
	require.Less(t, len(got), 700, "the oldest records went")
	for _, cc := range got {
		require.Equal(t, "big", cc.Info.Name, "the oldest records went first")
	}
	t.Logf("after 700 more: %d records, %d bytes (bound %d)", len(got), b.ClosedBytes(), broker.MaxClosedBytes)
}
