package natsproto_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// rawConn is a protocol-level client: send bytes, expect lines (STYLE.md
// habit 10, after nats-server's test/test.go).
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, s *server) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, br: bufio.NewReader(c)}
	info := r.line()
	require.True(t, strings.HasPrefix(info, "INFO {"), info)
	return r
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	_, err := r.c.Write([]byte(s))
	require.NoError(r.t, err)
}

// line reads one CRLF-terminated line (without CRLF).
func (r *rawConn) line() string {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.br.ReadString('\n')
	require.NoError(r.t, err, "reading a line; got %q", l)
	require.True(r.t, strings.HasSuffix(l, "\r\n"), "line %q not CRLF-terminated", l)
	return strings.TrimSuffix(l, "\r\n")
}

func (r *rawConn) expect(re string) string {
	r.t.Helper()
	l := r.line()
	require.Regexp(r.t, regexp.MustCompile("^"+re+"$"), l)
	return l
}

// expectClosed checks the server closed the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := r.br.Read(buf)
		if err != nil {
			return
		}
		require.Zero(r.t, n, "unexpected data before close: %q", buf[:n])
	}
}

func TestInfoFields(t *testing.T) {
	s := startServer(t, broker.Options{ServerName: "busbar-test"})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	l, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(l), "INFO ")), &info))
	for _, k := range []string{"server_id", "server_name", "version", "proto", "go", "host", "port", "headers", "max_payload", "client_id", "client_ip"} {
		require.Contains(t, info, k)
	}
	require.Equal(t, "busbar-test", info["server_name"])
	require.Equal(t, float64(1), info["proto"])
	require.Equal(t, float64(1<<20), info["max_payload"])
	require.Equal(t, true, info["headers"])
	require.Equal(t, "127.0.0.1", info["client_ip"])
	require.NotContains(t, info, "auth_required")
}

func TestProtoPubSubMsgFormat(t *testing.T) {
	s := startServer(t, broker.Options{})
	r := dialRaw(t, s)
	r.send("CONNECT {\"verbose\":true,\"headers\":true}\r\n")
	r.expect(`\+OK`)
	r.send("SUB foo 1\r\nSUB foo grp 2\r\n")
	r.expect(`\+OK`)
	r.expect(`\+OK`)
	r.send("PUB foo reply.to 5\r\nhello\r\n")
	r.expect(`\+OK`)
	got := []string{r.line(), r.line(), r.line(), r.line()}
	require.ElementsMatch(t, []string{"MSG foo 1 reply.to 5", "hello", "MSG foo 2 reply.to 5", "hello"}, got)
	r.send("HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n")
	r.expect(`\+OK`)
	r.expect(`HMSG foo [12] 12 14`)
	r.expect(`NATS/1.0`)
	r.expect(``)
	r.expect(`hi`)
	r.expect(`HMSG foo [12] 12 14`)
}

func TestProtoLowerCaseAndTabs(t *testing.T) {
	s := startServer(t, broker.Options{})
	r := dialRaw(t, s)
	r.send("connect {}\r\nsub\tfoo\t 9\r\npub foo 2\r\nok\r\nping\r\n")
	r.expect(`MSG foo 9 2`)
	r.expect(`ok`)
	r.expect(`PONG`)
}

func TestProtoPermissionViolations(t *testing.T) {
	perms := &auth.Permissions{
		Publish:   &auth.SubjectPermission{Allow: []string{"ok.>"}},
		Subscribe: &auth.SubjectPermission{Deny: []string{"secret.>"}},
	}
	a := auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		if c.User == "u" && c.Password == "p" {
			return &auth.Identity{Name: "u", Perms: perms}, true, nil
		}
		return nil, false, nil
	})
	s := startServer(t, broker.Options{Authenticator: a})
	r := dialRaw(t, s)
	r.send("CONNECT {\"user\":\"u\",\"pass\":\"p\"}\r\nPUB nope 1\r\nx\r\n")
	r.expect(`-ERR 'Permissions Violation for Publish to "nope"'`)
	r.send("SUB secret.x 1\r\n")
	r.expect(`-ERR 'Permissions Violation for Subscription to "secret.x"'`)
	r.send("SUB secret.y q 2\r\n")
	r.expect(`-ERR 'Permissions Violation for Subscription to "secret.y" using queue "q"'`)
	r.send("SUB ok.1 3\r\nPUB ok.1 2\r\nhi\r\n")
	r.expect(`MSG ok.1 3 2`)
	r.expect(`hi`)
}

func TestProtoAuthorization(t *testing.T) {
	s := startServer(t, broker.Options{Authenticator: auth.Token("s3cret"), AuthTimeout: 200 * time.Millisecond})
	t.Run("wrong token", func(t *testing.T) {
		r := dialRaw(t, s)
		r.send("CONNECT {\"auth_token\":\"nope\"}\r\n")
		r.expect(`-ERR 'Authorization Violation'`)
		r.expectClosed()
	})
	t.Run("op before connect", func(t *testing.T) {
		r := dialRaw(t, s)
		r.send("SUB foo 1\r\n")
		r.expect(`-ERR 'Authorization Violation'`)
		r.expectClosed()
	})
	t.Run("timeout", func(t *testing.T) {
		r := dialRaw(t, s)
		r.expect(`-ERR 'Authentication Timeout'`)
		r.expectClosed()
	})
	t.Run("right token", func(t *testing.T) {
		r := dialRaw(t, s)
		r.send("CONNECT {\"auth_token\":\"s3cret\"}\r\nPING\r\n")
		r.expect(`PONG`)
	})
}

func TestProtoMaxConnections(t *testing.T) {
	s := startServer(t, broker.Options{MaxConnections: 1})
	first := dialRaw(t, s)
	first.send("PING\r\n")
	first.expect("PONG")
	r := dialRaw(t, s)
	r.expect(`-ERR 'maximum connections exceeded'`)
	r.expectClosed()
}

func TestProtoStaleConnection(t *testing.T) {
	s := startServer(t, broker.Options{PingInterval: 50 * time.Millisecond, PingMax: 2})
	r := dialRaw(t, s)
	r.send("CONNECT {}\r\n")
	r.expect("PING")
	r.expect("PING")
	r.expect(`-ERR 'Stale Connection'`)
	r.expectClosed()
}

func TestProtoPingKeepsAlive(t *testing.T) {
	s := startServer(t, broker.Options{PingInterval: 50 * time.Millisecond, PingMax: 1})
	r := dialRaw(t, s)
	r.send("CONNECT {}\r\n")
	for range 4 {
		r.expect("PING")
		r.send("PONG\r\n")
	}
}

func TestProtoNoResponders(t *testing.T) {
	s := startServer(t, broker.Options{})
	r := dialRaw(t, s)
	r.send("CONNECT {\"headers\":true,\"no_responders\":true}\r\nSUB _INBOX.x.* 7\r\nPUB nobody _INBOX.x.1 0\r\n\r\n")
	r.expect(`HMSG _INBOX.x.1 7 16 16`)
	r.expect(`NATS/1.0 503`)
	r.expect(``)
	r.expect(``)
}

// TestProtoSplitReads delivers a stream of operations cut at every byte
// boundary, and the same stream merged into one write.
func TestProtoSplitReads(t *testing.T) {
	stream := "CONNECT {\"headers\":true}\r\nSUB a.b 1\r\nPUB a.b r 3\r\nxyz\r\nHPUB a.b 18 21\r\nNATS/1.0\r\nK: V\r\n\r\nabc\r\nPING\r\n"
	want := []string{"MSG a.b 1 r 3", "xyz", "HMSG a.b 1 18 21", "NATS/1.0", "K: V", "", "abc", "PONG"}
	s := startServer(t, broker.Options{})
	check := func(t *testing.T, r *rawConn) {
		for _, w := range want {
			require.Equal(t, w, r.line())
		}
	}
	for cut := 1; cut < len(stream); cut++ {
		r := dialRaw(t, s)
		r.send(stream[:cut])
		time.Sleep(time.Millisecond) // let the first part arrive as its own read
		r.send(stream[cut:])
		check(t, r)
		r.c.Close()
	}
	t.Run("byte at a time", func(t *testing.T) {
		r := dialRaw(t, s)
		for i := range len(stream) {
			r.send(stream[i : i+1])
		}
		check(t, r)
	})
	t.Run("merged", func(t *testing.T) {
		r := dialRaw(t, s)
		r.send(stream)
		check(t, r)
	})
}

func TestProtoUnsubMax(t *testing.T) {
	s := startServer(t, broker.Options{})
	r := dialRaw(t, s)
	r.send("CONNECT {}\r\nSUB n 1\r\nUNSUB 1 2\r\nPUB n 1\r\na\r\nPUB n 1\r\nb\r\nPUB n 1\r\nc\r\nPING\r\n")
	r.expect(`MSG n 1 1`)
	r.expect(`a`)
	r.expect(`MSG n 1 1`)
	r.expect(`b`)
	r.expect(`PONG`)
	require.Zero(t, s.b.NumSubscriptions())
}

// Old-style requests (SUB, UNSUB sid 1, PUB with reply) must not leave
// one sid entry per request behind in the connection.
func TestProtoAutoUnsubscribedSidsAreSwept(t *testing.T) {
	s := startServer(t, broker.Options{})
	r := dialRaw(t, s)
	r.send("CONNECT {}\r\n")
	for i := range 500 {
		sid := strconv.Itoa(i + 1)
		r.send("SUB r." + sid + " " + sid + "\r\nUNSUB " + sid + " 1\r\nPUB r." + sid + " 1\r\nx\r\n")
		r.expect("MSG r." + sid + " " + sid + " 1")
		r.expect("x")
	}
	r.send("PING\r\n")
	r.expect("PONG")
	require.Zero(t, s.b.NumSubscriptions())
	require.Less(t, natsproto.SidCount(s.b), 200, "sids of ended subscriptions are swept")
}
