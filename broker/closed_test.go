package broker_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
)

// closeLocals opens and closes n in-process clients, returning their ids.
func closeLocals(t *testing.T, b *broker.Broker, n int) []uint64 {
	t.Helper()
	var ids []uint64
	for range n {
		l, err := b.Local("l")
		require.NoError(t, err)
		_, err = l.Subscribe("a.b", func(*broker.Message) {})
		require.NoError(t, err)
		var id uint64
		for _, c := range b.Snapshot(false).Conns {
			if c.Client == broker.Client(l) {
				id = c.Info.ID
			}
		}
		require.NotZero(t, id)
		ids = append(ids, id)
		l.Close(nil)
	}
	return ids
}

// TestClosedHistory: the history keeps the newest MaxClosedClients
// closed connections, oldest first, with their subscriptions, stop time
// and reason; the counts by reason are not bounded; a negative bound
// keeps none.
func TestClosedHistory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		max   int
		close int
		kept  int
	}{
		{"bounded", 3, 5, 3},
		{"under the bound", 3, 2, 2},
		{"default", 0, 4, 4},
		{"none", -1, 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := broker.New(broker.Options{MaxClosedClients: tc.max})
			require.NoError(t, err)
			ids := closeLocals(t, b, tc.close)
			got := b.ClosedConns()
			require.Len(t, got, tc.kept)
			for i, cc := range got {
				require.Equal(t, ids[tc.close-tc.kept+i], cc.Info.ID)
				require.Equal(t, broker.ReasonClientClosed, cc.Reason)
				require.False(t, cc.Stop.IsZero())
				require.Nil(t, cc.Client, "a record keeps no connection alive")
				require.Equal(t, 1, cc.NumSubs)
				require.Equal(t, "a.b", cc.Subs[0].Subject)
			}
			var n int64
			for _, c := range b.ClosedCounts() {
				require.Equal(t, broker.ReasonClientClosed, c.Reason)
				n += c.N
			}
			require.Equal(t, int64(tc.close), n)
		})
	}
}

// TestCloseReason: the reasons shared by every transport, in
// nats-server's words.
func TestCloseReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, broker.ReasonClientClosed},
		{broker.ErrSlowConsumer, broker.ReasonSlowConsumerPending},
		{broker.ErrServerShutdown, broker.ReasonServerShutdown},
		{broker.ErrAuthExpired, broker.ReasonAuthExpired},
		{&broker.WriteError{Err: timeoutErr{}}, broker.ReasonSlowConsumerDeadline},
		{&broker.WriteError{Err: errString("broken pipe")}, broker.ReasonWriteError},
		{errString("connection reset by peer"), broker.ReasonReadError},
	} {
		require.Equal(t, tc.want, broker.CloseReason(tc.err), "%v", tc.err)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

type errString string

func (e errString) Error() string { return string(e) }
