package natsproto_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// The -ERR lines busbar sends, each with the condition that causes it and
// its exact bytes, checked against nats-server's source (v2.15 development
// line: server/client.go sendErr and its callers, server/parser.go parseErr,
// server/errors.go). Where nats-server closes without an -ERR (malformed
// arguments of PUB, HPUB, SUB, UNSUB, a CONNECT that is not JSON, HPUB from
// a client that did not declare headers: its readLoop closes with
// ProtocolViolation), busbar closes without one too.

// errCase is one condition. connect is sent first ("" means CONNECT {},
// "-" nothing); want is what comes back after INFO, byte for byte (nil:
// nothing before the close); closes says whether the connection ends.
type errCase struct {
	name    string
	opts    broker.Options
	connect string
	send    string
	want    string
	closes  bool
}

func errLine(s string) string { return "-ERR '" + s + "'\r\n" }

// permsAuth accepts user u with password p, publish allowed on ok.> only
// and subscribe denied on secret.>, and user e whose credentials expire
// a second after it connects.
var permsAuth = auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	switch {
	case c.User == "u" && c.Password == "p":
		return &auth.Identity{Name: "u", Perms: &auth.Permissions{
			Publish:   &auth.SubjectPermission{Allow: []string{"ok.>"}},
			Subscribe: &auth.SubjectPermission{Deny: []string{"secret.>"}},
		}}, true, nil
	case c.User == "e" && c.Password == "p":
		return &auth.Identity{Name: "e", Expires: time.Now().Add(time.Second)}, true, nil
	}
	return nil, false, nil
})

var errCases = []errCase{
	// server/parser.go: parseErr.
	{name: "unknown operation", send: "FOO bar\r\n", want: errLine("Unknown Protocol Operation"), closes: true},
	{name: "payload not followed by CRLF", send: "PUB foo 1\r\nxy\r\n", want: errLine("Unknown Protocol Operation"), closes: true},
	// server/parser.go: overMaxControlLineLimit (ErrMaxControlLine).
	{name: "max_control_line", opts: broker.Options{MaxControlLine: 16}, send: "SUB " + strings.Repeat("a", 32) + " 1\r\n",
		want: errLine("maximum control line exceeded"), closes: true},
	{name: "max_control_line, no newline yet", opts: broker.Options{MaxControlLine: 16}, send: "SUB " + strings.Repeat("a", 32),
		want: errLine("maximum control line exceeded"), closes: true},
	// server/client.go: maxPayloadViolation.
	{name: "max_payload", opts: broker.Options{MaxPayload: 8}, send: "PUB foo 9\r\n123456789\r\n",
		want: errLine("Maximum Payload Violation"), closes: true},
	{name: "max_payload, HPUB", opts: broker.Options{MaxPayload: 8}, connect: "CONNECT {\"headers\":true}\r\n",
		send: "HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n", want: errLine("Maximum Payload Violation"), closes: true},
	// server/client.go: maxSubsExceeded (ErrTooManySubs); the connection stays.
	{name: "max_subscriptions", opts: broker.Options{MaxSubscriptions: 1}, send: "SUB a 1\r\nSUB b 2\r\n",
		want: errLine("maximum subscriptions exceeded")},
	// server/client.go: processSub's sublist insert.
	{name: "invalid subject", send: "SUB foo..bar 1\r\n", want: errLine("Invalid Subject")},
	// server/client.go: processPub (nats-server checks it in pedantic mode
	// only; busbar always, and drops the message: docs/ARCHITECTURE.md).
	{name: "invalid publish subject", send: "PUB foo.* 1\r\nx\r\n", want: errLine("Invalid Publish Subject")},
	// server/client.go: processConnect (ErrNoRespondersRequiresHeaders,
	// ErrBadClientProtocol).
	{name: "no_responders without headers", connect: "CONNECT {\"no_responders\":true}\r\n",
		want: errLine("no responders requires headers support"), closes: true},
	{name: "client protocol 2", connect: "CONNECT {\"protocol\":2}\r\n", want: errLine("invalid client protocol"), closes: true},
	// server/client.go: authViolation, authTimeout, authExpired.
	{name: "wrong credentials", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"u\",\"pass\":\"x\"}\r\n",
		want: errLine("Authorization Violation"), closes: true},
	{name: "operation before CONNECT", opts: broker.Options{Authenticator: permsAuth}, connect: "-", send: "SUB foo 1\r\n",
		want: errLine("Authorization Violation"), closes: true},
	{name: "no CONNECT in time", opts: broker.Options{Authenticator: permsAuth, AuthTimeout: 100 * time.Millisecond}, connect: "-",
		want: errLine("Authentication Timeout"), closes: true},
	{name: "credentials expire", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"e\",\"pass\":\"p\"}\r\n",
		want: errLine("User Authentication Expired"), closes: true},
	// server/client.go: pubPermissionViolation, subPermissionViolation.
	{name: "publish denied", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"u\",\"pass\":\"p\"}\r\n",
		send: "PUB nope 1\r\nx\r\n", want: errLine(`Permissions Violation for Publish to "nope"`)},
	{name: "subscribe denied", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"u\",\"pass\":\"p\"}\r\n",
		send: "SUB secret.x 1\r\n", want: errLine(`Permissions Violation for Subscription to "secret.x"`)},
	{name: "queue subscribe denied", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"u\",\"pass\":\"p\"}\r\n",
		send: "SUB secret.y q 2\r\n", want: errLine(`Permissions Violation for Subscription to "secret.y" using queue "q"`)},
	// server/client.go: replySubjectViolation (isReservedReply).
	{name: "reserved reply _R_", send: "PUB a _R_.x.y 1\r\nx\r\n", want: errLine(`Permissions Violation for Publish with Reply of "_R_.x.y"`)},
	{name: "reserved reply $JS.ACK", send: "PUB a $JS.ACK.s.c.1.2.3.4.5 1\r\nx\r\n",
		want: errLine(`Permissions Violation for Publish with Reply of "$JS.ACK.s.c.1.2.3.4.5"`)},
	{name: "reserved reply _GR_", send: "PUB a _GR_.g.x 1\r\nx\r\n", want: errLine(`Permissions Violation for Publish with Reply of "_GR_.g.x"`)},
	{name: "reserved reply, subject denied", opts: broker.Options{Authenticator: permsAuth}, connect: "CONNECT {\"user\":\"u\",\"pass\":\"p\"}\r\n",
		send: "PUB nope $GR.x 1\r\nx\r\n", want: errLine(`Permissions Violation for Publish to "nope"`)},
	// server/client.go: processInboundClientMsg (clientNRGPrefix).
	{name: "publish to $NRG.", send: "PUB $NRG.x 1\r\nx\r\n", want: errLine(`Permissions Violation for Publish to "$NRG.x"`)},
	// server/client.go: processPingTimer.
	{name: "stale connection", opts: broker.Options{PingInterval: 50 * time.Millisecond, PingMax: 2},
		want: "PING\r\nPING\r\n" + errLine("Stale Connection"), closes: true},
	// Closed without an -ERR, as nats-server (parse returns the error,
	// readLoop closes with ProtocolViolation).
	{name: "malformed PUB", send: "PUB foo\r\n", closes: true},
	{name: "PUB size not a number", send: "PUB foo x\r\n", closes: true},
	{name: "malformed HPUB", connect: "CONNECT {\"headers\":true}\r\n", send: "HPUB foo 20 10\r\n", closes: true},
	{name: "HPUB without headers", connect: "CONNECT {\"headers\":false}\r\n", send: "HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n", closes: true},
	{name: "malformed SUB", send: "SUB foo\r\n", closes: true},
	{name: "malformed UNSUB", send: "UNSUB 1 x\r\n", closes: true},
	{name: "CONNECT not JSON", connect: "CONNECT {nope\r\n", closes: true},
}

// TestNATSServerErrStrings sends each condition and reads back exactly
// nats-server's bytes, then checks the connection closes or still answers.
func TestNATSServerErrStrings(t *testing.T) {
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.opts)
			r := dialRaw(t, s)
			switch tc.connect {
			case "":
				r.send("CONNECT {}\r\n")
			case "-":
			default:
				r.send(tc.connect)
			}
			r.send(tc.send)
			r.exactly(tc.want)
			if tc.closes {
				r.expectClosed()
				return
			}
			r.send("PING\r\n")
			r.exactly("PONG\r\n")
		})
	}
}

// TestNATSServerErrStringsMaxConnections: over max_connections (the
// broker's, and a user's own) a client gets INFO, then nats-server's
// ErrTooManyConnections text, and is closed.
func TestNATSServerErrStringsMaxConnections(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s := startServer(t, broker.Options{MaxConnections: 1})
		first := dialRaw(t, s)
		first.send("CONNECT {}\r\nPING\r\n")
		first.exactly("PONG\r\n")
		r := dialRaw(t, s)
		r.exactly(errLine("maximum connections exceeded"))
		r.expectClosed()
	})
	t.Run("user", func(t *testing.T) {
		a := auth.AuthenticatorFunc(func(context.Context, *auth.Credentials) (*auth.Identity, bool, error) {
			return &auth.Identity{Name: "one", MaxConns: 1}, true, nil
		})
		s := startServer(t, broker.Options{Authenticator: a})
		first := dialRaw(t, s)
		first.send("CONNECT {\"user\":\"one\"}\r\nPING\r\n")
		first.exactly("PONG\r\n")
		r := dialRaw(t, s)
		r.send("CONNECT {\"user\":\"one\"}\r\n")
		r.exactly(errLine("maximum connections exceeded"))
		r.expectClosed()
	})
}

// TestNATSServerErrStringsReload: a reload that forbids a subscription
// removes it with nats-server's text, sid included (server/client.go,
// the permissions check after a reload); the connection stays.
func TestNATSServerErrStringsReload(t *testing.T) {
	open := func(deny ...string) auth.Authenticator {
		return auth.AuthenticatorFunc(func(context.Context, *auth.Credentials) (*auth.Identity, bool, error) {
			return &auth.Identity{Name: "u", Perms: &auth.Permissions{Subscribe: &auth.SubjectPermission{Deny: deny}}}, true, nil
		})
	}
	s := startServer(t, broker.Options{Authenticator: open()})
	r := dialRaw(t, s)
	r.send("CONNECT {\"user\":\"u\"}\r\nSUB secret.x 1\r\nSUB secret.y q 2\r\nPING\r\n")
	r.exactly("PONG\r\n")
	require.NoError(t, s.b.Reload(broker.Options{Authenticator: open("secret.>")}))
	got := []string{r.line(), r.line()}
	require.ElementsMatch(t, []string{
		`-ERR 'Permissions Violation for Subscription to "secret.x" (sid "1")'`,
		`-ERR 'Permissions Violation for Subscription to "secret.y" using queue "q" (sid "2")'`,
	}, got)
	r.send("PING\r\n")
	r.exactly("PONG\r\n")
}

// exactly reads len(want) bytes and checks they are want.
func (r *rawConn) exactly(want string) {
	r.t.Helper()
	if want == "" {
		return
	}
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	n, err := io.ReadFull(r.br, got)
	require.NoError(r.t, err, "reading %q; got %q", want, got[:n])
	require.Equal(r.t, want, string(got))
}
