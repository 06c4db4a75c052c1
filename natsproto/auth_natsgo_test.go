package natsproto_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// startAuth runs a broker whose Authenticator is auth.New(o).
func startAuth(t testing.TB, o auth.Options, bo broker.Options) *server {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	if bo.Logger == nil {
		bo.Logger = o.Logger
	}
	a, err := auth.New(o)
	require.NoError(t, err)
	bo.Authenticator = a
	return startServer(t, bo)
}

func mustBcrypt(t testing.TB, s string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(s), bcrypt.MinCost)
	require.NoError(t, err)
	return string(h)
}

// connect dials s with nats.go and no reconnects; the caller checks err.
func connect(t testing.TB, s *server, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	opts = append([]nats.Option{nats.NoReconnect(), nats.Timeout(3 * time.Second)}, opts...)
	nc, err := nats.Connect(s.url(), opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// rawConnect sends CONNECT json on a plain socket and returns the first
// line the server answers after INFO (after a PING, so success is PONG).
func rawConnect(t testing.TB, s *server, connectJSON string) string {
	t.Helper()
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(info, "INFO "), info)
	_, err = fmt.Fprintf(c, "CONNECT %s\r\nPING\r\n", connectJSON)
	require.NoError(t, err)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimRight(line, "\r\n")
}

const authViolation = "-ERR 'Authorization Violation'"

func TestAuthUsersAndTokens(t *testing.T) {
	users := auth.Options{Users: []auth.User{
		{Name: "alice", Password: "alicepw"},
		{Name: "bob", Password: mustBcrypt(t, "bobpw")},
	}}
	plainTok := auth.Options{Token: "s3cr3t-token"}
	bcryptTok := auth.Options{Token: mustBcrypt(t, "bcrypt-token")}
	for _, tc := range []struct {
		name string
		o    auth.Options
		opt  nats.Option
		ok   bool
	}{
		{"plain password", users, nats.UserInfo("alice", "alicepw"), true},
		{"plain password wrong", users, nats.UserInfo("alice", "nope"), false},
		{"bcrypt password", users, nats.UserInfo("bob", "bobpw"), true},
		{"bcrypt password wrong", users, nats.UserInfo("bob", "alicepw"), false},
		{"unknown user", users, nats.UserInfo("carol", "alicepw"), false},
		{"no credentials", users, nats.Name("anon"), false},
		{"plain token", plainTok, nats.Token("s3cr3t-token"), true},
		{"plain token wrong", plainTok, nats.Token("s3cr3t-tokeN"), false},
		{"bcrypt token", bcryptTok, nats.Token("bcrypt-token"), true},
		{"bcrypt token wrong", bcryptTok, nats.Token("bcrypt-toke"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startAuth(t, tc.o, broker.Options{})
			nc, err := connect(t, s, tc.opt)
			if !tc.ok {
				require.ErrorIs(t, err, nats.ErrAuthorization)
				return
			}
			require.NoError(t, err)
			require.NoError(t, nc.Flush())
		})
	}
}

func TestAuthViolationOnTheWire(t *testing.T) {
	s := startAuth(t, auth.Options{Users: []auth.User{{Name: "alice", Password: "alicepw"}}}, broker.Options{})
	require.Equal(t, authViolation, rawConnect(t, s, `{"user":"alice","pass":"bad"}`))
	require.Equal(t, "PONG", rawConnect(t, s, `{"user":"alice","pass":"alicepw"}`))
}

func TestAuthNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, _ := kp.PublicKey()
	other, _ := nkeys.CreateUser()
	s := startAuth(t, auth.Options{Users: []auth.User{{NKey: pub}}}, broker.Options{})

	nc, err := connect(t, s, nats.Nkey(pub, kp.Sign))
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	_, err = connect(t, s, nats.Nkey(pub, other.Sign))
	require.ErrorIs(t, err, nats.ErrAuthorization, "signed with another key")
	otherPub, _ := other.PublicKey()
	_, err = connect(t, s, nats.Nkey(otherPub, other.Sign))
	require.ErrorIs(t, err, nats.ErrAuthorization, "unknown nkey")
	require.Equal(t, authViolation, rawConnect(t, s, `{"nkey":"`+pub+`"}`), "no signature")
}

func TestAuthNonceInInfo(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	for _, tc := range []struct {
		name  string
		o     auth.Options
		nonce bool
	}{
		{"users only", auth.Options{Users: []auth.User{{Name: "a", Password: "b"}}}, false},
		{"nkey user", auth.Options{Users: []auth.User{{NKey: pub}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startAuth(t, tc.o, broker.Options{})
			c, err := net.Dial("tcp", s.t.Addr().String())
			require.NoError(t, err)
			defer c.Close()
			info, err := bufio.NewReader(c).ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, tc.nonce, strings.Contains(info, `"nonce":`), info)
			require.Contains(t, info, `"auth_required":true`)
		})
	}
}

func TestAuthNoAuthUser(t *testing.T) {
	o := auth.Options{
		Users: []auth.User{
			{Name: "guest", Password: "guestpw", Perms: &auth.Permissions{Publish: &auth.SubjectPermission{Allow: []string{"public.>"}}}},
			{Name: "admin", Password: "adminpw"},
		},
		NoAuthUser: "guest",
	}
	s := startAuth(t, o, broker.Options{})
	errs := make(chan error, 4)
	nc, err := connect(t, s, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	require.NoError(t, err, "no credentials: the no_auth_user")
	require.NoError(t, nc.Publish("public.x", nil))
	require.NoError(t, nc.Publish("private.x", nil))
	require.NoError(t, nc.Flush())
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "private.x"`)
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation")
	}
	_, err = connect(t, s, nats.UserInfo("admin", "wrong"))
	require.ErrorIs(t, err, nats.ErrAuthorization, "wrong credentials never fall back to no_auth_user")
	nc2, err := connect(t, s, nats.UserInfo("admin", "adminpw"))
	require.NoError(t, err)
	require.NoError(t, nc2.Flush())

	_, err = auth.New(auth.Options{Users: o.Users, NoAuthUser: "nobody"})
	require.ErrorIs(t, err, auth.ErrConfig)
}

func TestAuthNoAuthUserPerConnType(t *testing.T) {
	a, err := auth.New(auth.Options{
		Users:       []auth.User{{Name: "std", Password: "x"}, {Name: "local", Password: "y"}},
		NoAuthUser:  "std",
		NoAuthUsers: map[auth.ConnType]string{auth.ConnInProcess: "local"},
	})
	require.NoError(t, err)
	rec := &recorder{a: a}
	s := startServer(t, broker.Options{Authenticator: rec})
	_, err = connect(t, s)
	require.NoError(t, err)
	nc, err := nats.Connect("", nats.InProcessServer(natsInProc(s)))
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.Flush())
	require.Equal(t, []string{"std", "local"}, rec.names())
}

// recorder is an Authenticator that remembers whom its inner one accepted.
type recorder struct {
	a  auth.Authenticator
	mu sync.Mutex
	ns []string
}

func (r *recorder) Authenticate(ctx contextT, c *auth.Credentials) (*auth.Identity, bool, error) {
	id, ok, err := r.a.Authenticate(ctx, c)
	if ok {
		r.mu.Lock()
		r.ns = append(r.ns, id.Name)
		r.mu.Unlock()
	}
	return id, ok, err
}

func (r *recorder) NonceRequired() bool { return auth.NonceRequired(r.a) }

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ns...)
}

func TestAuthPermissionViolations(t *testing.T) {
	o := auth.Options{Users: []auth.User{{Name: "u", Password: "p", Perms: &auth.Permissions{
		Publish:   &auth.SubjectPermission{Allow: []string{"orders.>"}, Deny: []string{"orders.secret"}},
		Subscribe: &auth.SubjectPermission{Allow: []string{"updates.*", "work.* workers"}, Deny: []string{"updates.admin"}},
	}}}}
	s := startAuth(t, o, broker.Options{})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	_, _ = r.ReadString('\n')
	expect := func(send, want string) {
		t.Helper()
		_, err := fmt.Fprintf(c, "%sPING\r\n", send)
		require.NoError(t, err)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, want, strings.TrimRight(line, "\r\n"), send)
		if want != "PONG" {
			line, _ = r.ReadString('\n')
			require.Equal(t, "PONG\r\n", line, "the connection stays open")
		}
	}
	expect(`CONNECT {"user":"u","pass":"p"}`+"\r\n", "PONG")
	for _, tc := range []struct{ send, want string }{
		{"PUB orders.new 0\r\n\r\n", "PONG"},
		{"PUB orders.secret 0\r\n\r\n", `-ERR 'Permissions Violation for Publish to "orders.secret"'`},
		{"PUB billing.x 0\r\n\r\n", `-ERR 'Permissions Violation for Publish to "billing.x"'`},
		{"SUB updates.x 1\r\n", "PONG"},
		{"SUB updates.admin 2\r\n", `-ERR 'Permissions Violation for Subscription to "updates.admin"'`},
		{"SUB billing.> 3\r\n", `-ERR 'Permissions Violation for Subscription to "billing.>"'`},
		{"SUB work.a workers 4\r\n", "PONG"},
		{"SUB work.a others 5\r\n", `-ERR 'Permissions Violation for Subscription to "work.a" using queue "others"'`},
		{"SUB work.a 6\r\n", `-ERR 'Permissions Violation for Subscription to "work.a"'`},
	} {
		expect(tc.send, tc.want)
	}
}

func TestAuthAllowResponses(t *testing.T) {
	o := auth.Options{Users: []auth.User{
		{Name: "svc", Password: "p", Perms: &auth.Permissions{
			Subscribe:      &auth.SubjectPermission{Allow: []string{"help"}},
			AllowResponses: &auth.ResponsePermission{},
		}},
		{Name: "client", Password: "p"},
	}}
	s := startAuth(t, o, broker.Options{})
	errs := make(chan error, 8)
	svc, err := connect(t, s, nats.UserInfo("svc", "p"), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	require.NoError(t, err)
	var mu sync.Mutex
	_, err = svc.Subscribe("help", func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		require.NoError(t, m.Respond([]byte("first")))
		require.NoError(t, m.Respond([]byte("second"))) // over max (1): refused
	})
	require.NoError(t, err)
	require.NoError(t, svc.Flush())
	cl, err := connect(t, s, nats.UserInfo("client", "p"))
	require.NoError(t, err)
	m, err := cl.Request("help", nil, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, "first", string(m.Data))
	select {
	case err := <-errs:
		require.ErrorContains(t, err, "Permissions Violation for Publish to")
	case <-time.After(5 * time.Second):
		t.Fatal("second response was not refused")
	}
	require.NoError(t, svc.Publish("other", nil), "no publish allow list: only responses")
	select {
	case err := <-errs:
		require.ErrorContains(t, err, `Permissions Violation for Publish to "other"`)
	case <-time.After(5 * time.Second):
		t.Fatal("publish outside responses was not refused")
	}
}

func TestAuthAllowedConnectionTypes(t *testing.T) {
	o := auth.Options{Users: []auth.User{
		{Name: "ws", Password: "p", ConnTypes: auth.ConnTypes(0).Add(auth.ConnWebSocket)},
		{Name: "local", Password: "p", ConnTypes: auth.ConnTypes(0).Add(auth.ConnInProcess)},
		{Name: "any", Password: "p"},
	}}
	// A refused in-process client never reads its -ERR: the server's
	// writer blocks on the pipe while nats.go writes PING (reported to the
	// lead); a short write deadline ends it.
	s := startAuth(t, o, broker.Options{WriteDeadline: 300 * time.Millisecond})
	for _, tc := range []struct {
		user      string
		tcp, inpr bool
	}{{"ws", false, false}, {"local", false, true}, {"any", true, true}} {
		t.Run(tc.user, func(t *testing.T) {
			_, err := connect(t, s, nats.UserInfo(tc.user, "p"))
			if tc.tcp {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, nats.ErrAuthorization)
			}
			nc, err := nats.Connect("", nats.InProcessServer(natsInProc(s)), nats.UserInfo(tc.user, "p"), nats.NoReconnect())
			if tc.inpr {
				require.NoError(t, err)
				nc.Close()
			} else {
				require.Error(t, err)
			}
		})
	}
	for _, n := range []string{"standard", "Websocket", "MQTT_WS", "in_process", "leafnode_ws"} {
		_, err := auth.ParseConnType(n)
		require.NoError(t, err, n)
	}
	_, err := auth.ParseConnType("carrier-pigeon")
	require.Error(t, err)
}

func TestAuthUserMaxConnections(t *testing.T) {
	s := startAuth(t, auth.Options{Users: []auth.User{{Name: "u", Password: "p", MaxConns: 2}}}, broker.Options{})
	a, err := connect(t, s, nats.UserInfo("u", "p"))
	require.NoError(t, err)
	_, err = connect(t, s, nats.UserInfo("u", "p"))
	require.NoError(t, err)
	_, err = connect(t, s, nats.UserInfo("u", "p"))
	require.ErrorContains(t, err, "maximum connections exceeded")
	require.Equal(t, "-ERR 'maximum connections exceeded'", rawConnect(t, s, `{"user":"u","pass":"p"}`))
	a.Close()
	require.Eventually(t, func() bool {
		nc, err := connect(t, s, nats.UserInfo("u", "p"))
		if err == nil {
			nc.Close()
		}
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "a slot is free again")
}

func TestAuthTimeout(t *testing.T) {
	s := startAuth(t, auth.Options{Token: "t"}, broker.Options{AuthTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	_, _ = r.ReadString('\n')
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "-ERR 'Authentication Timeout'\r\n", line)
}

// TestAuthChainCustom: a host's own Authenticator chained before the
// built-ins sees the transport and can accept what the config does not.
func TestAuthChainCustom(t *testing.T) {
	builtin, err := auth.New(auth.Options{Users: []auth.User{{Name: "cfg", Password: "p"}}})
	require.NoError(t, err)
	var seen []auth.ConnType
	var mu sync.Mutex
	custom := auth.AuthenticatorFunc(func(_ contextT, c *auth.Credentials) (*auth.Identity, bool, error) {
		mu.Lock()
		seen = append(seen, c.Conn)
		mu.Unlock()
		if c.Token == "app-token" {
			return &auth.Identity{Name: "app"}, true, nil
		}
		return nil, false, nil
	})
	s := startServer(t, broker.Options{Authenticator: auth.Chain(custom, builtin)})
	_, err = connect(t, s, nats.Token("app-token"))
	require.NoError(t, err)
	_, err = connect(t, s, nats.UserInfo("cfg", "p"))
	require.NoError(t, err)
	_, err = connect(t, s, nats.Token("nope"))
	require.ErrorIs(t, err, nats.ErrAuthorization)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []auth.ConnType{auth.ConnStandard, auth.ConnStandard, auth.ConnStandard}, seen)
}

func TestAuthWildcardSubscriptionSkipsDeniedSubjects(t *testing.T) {
	o := auth.Options{Users: []auth.User{
		{Name: "reader", Password: "p", Perms: &auth.Permissions{Subscribe: &auth.SubjectPermission{Deny: []string{"secret.>", "hr.pay"}}}},
		{Name: "writer", Password: "p"},
	}}
	s := startAuth(t, o, broker.Options{})
	r, err := connect(t, s, nats.UserInfo("reader", "p"))
	require.NoError(t, err)
	sub, err := r.SubscribeSync(">")
	require.NoError(t, err, "a wildcard overlapping deny entries is allowed, as in nats-server")
	require.NoError(t, r.Flush())
	w, err := connect(t, s, nats.UserInfo("writer", "p"))
	require.NoError(t, err)
	for _, subj := range []string{"secret.plans", "hr.pay", "hr.news", "public"} {
		require.NoError(t, w.Publish(subj, []byte(subj)))
	}
	require.NoError(t, w.Flush())
	var got []string
	for range 2 {
		m, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err)
		got = append(got, m.Subject)
	}
	_, err = sub.NextMsg(200 * time.Millisecond)
	require.ErrorIs(t, err, nats.ErrTimeout)
	require.Equal(t, []string{"hr.news", "public"}, got)
}

func TestAuthLocalAsIdentityLimits(t *testing.T) {
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	defer func() { _ = b.Shutdown(t.Context()) }()
	id := &auth.Identity{Name: "svc", MaxConns: 1, Perms: &auth.Permissions{AllowResponses: &auth.ResponsePermission{}}}
	svc, err := b.LocalAs("svc", id)
	require.NoError(t, err)
	_, err = b.LocalAs("svc2", id)
	require.ErrorIs(t, err, broker.ErrMaxConnections)
	_, err = svc.SubscribeInline("help", func(m *broker.Message) {
		require.NoError(t, svc.Publish(string(m.Reply), []byte("ok")))
		require.ErrorIs(t, svc.Publish(string(m.Reply), []byte("again")), broker.ErrPermPublish)
	})
	require.NoError(t, err)
	cl, err := b.Local("client")
	require.NoError(t, err)
	m, err := cl.Request(t.Context(), "help", nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(m.Payload))
	require.ErrorIs(t, svc.Publish("elsewhere", nil), broker.ErrPermPublish)
	svc.Close(nil)
	_, err = b.LocalAs("svc3", id)
	require.NoError(t, err, "the slot is free again")
}
