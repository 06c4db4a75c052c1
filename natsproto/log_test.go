package natsproto_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// jsonLog collects a logger's lines as decoded JSON objects.
type jsonLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	info bool // the handler at Info (the default run); else at Debug (-D)
}

func (l *jsonLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *jsonLog) logger() *slog.Logger {
	level := slog.LevelDebug
	if l.info {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: level}))
}

func (l *jsonLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the decoded lines whose msg is msg.
func (l *jsonLog) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.text()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line %q", sc.Text())
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func logUsers(t testing.TB, perms *auth.Permissions) auth.Authenticator {
	t.Helper()
	a, err := auth.New(auth.Options{Users: []auth.User{{Name: "alice", Password: "alice-s3cret", Perms: perms}}})
	require.NoError(t, err)
	return a
}

// TestLogRepeatedAuthFailuresAreRateLimited: twenty nats.go connections
// from one host with a wrong password write one "authentication failed"
// line at Info, with the remote address and the user but never the
// password.
func TestLogRepeatedAuthFailuresAreRateLimited(t *testing.T) {
	l := jsonLog{info: true} // at Debug every one is written (TestLogEveryAuthFailureAtDebug)
	s := startServer(t, broker.Options{Logger: l.logger(), Authenticator: logUsers(t, nil)})
	for i := 0; i < 20; i++ {
		nc, err := nats.Connect(s.url(), nats.UserInfo("alice", "wrong-s3cret"), nats.MaxReconnects(0), nats.NoReconnect())
		require.Error(t, err, "attempt %d", i)
		if nc != nil {
			nc.Close()
		}
	}
	lines := l.lines(t, "authentication failed")
	require.Len(t, lines, 1, "repeated failures from one host are written once per %v", broker.LogRepeatInterval)
	host, _, err := net.SplitHostPort(lines[0]["remote"].(string))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host)
	require.Equal(t, "alice", lines[0]["creds"].(map[string]any)["user"])
	require.NotContains(t, l.text(), "wrong-s3cret")
	require.Equal(t, "WARN", lines[0]["level"])
}

// TestLogEveryAuthFailureAtDebug: at Debug (-D) the same twenty
// failures are each written (issue 18: a developer retrying from
// 127.0.0.1 saw one line per 10 s).
func TestLogEveryAuthFailureAtDebug(t *testing.T) {
	var l jsonLog
	s := startServer(t, broker.Options{Logger: l.logger(), Authenticator: logUsers(t, nil)})
	for i := 0; i < 20; i++ {
		nc, err := nats.Connect(s.url(), nats.UserInfo("alice", "wrong-s3cret"), nats.MaxReconnects(0), nats.NoReconnect())
		require.Error(t, err, "attempt %d", i)
		if nc != nil {
			nc.Close()
		}
	}
	require.Len(t, l.lines(t, "authentication failed"), 20)
	require.NotContains(t, l.text(), "wrong-s3cret")
}

// TestLogConnectionLinesCarryIdentity: a line about one connection names
// its id, transport, remote address and user.
func TestLogConnectionLinesCarryIdentity(t *testing.T) {
	var l jsonLog
	s := startServer(t, broker.Options{Logger: l.logger(), Authenticator: logUsers(t, nil)})
	nc, err := nats.Connect(s.url(), nats.UserInfo("alice", "alice-s3cret"))
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.SubscribeSync("orders.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	// A reload that forbids the subscription logs it on alice's connection.
	deny := &auth.Permissions{Subscribe: &auth.SubjectPermission{Deny: []string{"orders.>"}}}
	require.NoError(t, s.b.Reload(broker.Options{Logger: l.logger(), Authenticator: logUsers(t, deny)}))
	lines := l.lines(t, "reload: removed a subscription the new permissions forbid")
	require.Len(t, lines, 1)
	line := lines[0]
	require.Equal(t, "nats", line["transport"])
	require.Equal(t, "alice", line["user"])
	require.Equal(t, "orders.>", line["subject"])
	require.Equal(t, nc.LocalAddr(), line["remote"], "the client's own address")
	cid, err := nc.GetClientID()
	require.NoError(t, err)
	require.EqualValues(t, cid, line["cid"])

	// Closing: the debug line names the same connection.
	nc.Close()
	require.Eventually(t, func() bool {
		for _, m := range l.lines(t, "nats: closing") {
			if m["user"] == "alice" && m["transport"] == "nats" {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond)
	require.NotContains(t, l.text(), "alice-s3cret")
}
