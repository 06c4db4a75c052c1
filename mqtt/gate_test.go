package mqtt_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/websocket"
)

// Issue 15, findings 1–3: wills, retained replay and retained state pass
// the broker's one gate. Real clients: paho.golang (5.0),
// paho.mqtt.golang (3.1.1, also over WebSocket), nats.go. Absence is
// shown by order, never by a pause: the forbidden thing is sent first,
// then an allowed marker on the same path, and only what is allowed
// arrives before the marker.

// gateWait bounds every wait: CI is a busy 2-core machine.
const gateWait = 20 * time.Second

// gateUsers are the identities of every gate test broker. The passwords
// are distinctive so TestGateSecretsNeverLogged can look for them.
var gateUsers = []auth.User{
	// Account A.
	{Name: "willer", Password: "willer-pw-6Qz1", Account: "A", Perms: &auth.Permissions{
		Publish: &auth.SubjectPermission{Allow: []string{"a.b"}}}},
	{Name: "alice", Password: "alice-pw-8Kd2", Account: "A"},
	{Name: "amy", Password: "amy-pw-3Rt3", Account: "A"},
	// Account B.
	{Name: "bob", Password: "bob-pw-5Wn4", Account: "B"},
	{Name: "bea", Password: "bea-pw-7Hc5", Account: "B"},
	// The global account.
	{Name: "gus", Password: "gus-pw-2Lm6"},
	{Name: "peeker", Password: "peeker-pw-4Xv7", Perms: &auth.Permissions{
		Subscribe: &auth.SubjectPermission{Allow: []string{">"}, Deny: []string{"secret.>", "a.secret"}}}},
}

func gatePassword(t testing.TB, user string) string {
	for _, u := range gateUsers {
		if u.Name == user {
			return u.Password
		}
	}
	t.Fatalf("no gate user %q", user)
	return ""
}

// gateLog collects the JSON log of every gate test broker.
var gateLog logSink

// gateEnv is a broker with gateUsers, MQTT and NATS listeners and a
// WebSocket listener serving both.
type gateEnv struct {
	*env
	ws *websocket.Transport
}

func startGate(t *testing.T) *gateEnv {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(&gateLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(auth.Options{Users: gateUsers, Logger: log})
	require.NoError(t, err)
	b, err := broker.New(broker.Options{Authenticator: a, Logger: log})
	require.NoError(t, err)
	mt, err := mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	require.NoError(t, err)
	wt, err := websocket.New(websocket.Options{Host: "127.0.0.1", NATS: nt, MQTT: mt})
	require.NoError(t, err)
	for _, l := range []interface{ Listen() error }{mt, nt, wt} {
		require.NoError(t, l.Listen())
	}
	require.NoError(t, b.Start(mt, nt, wt))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &gateEnv{env: &env{b: b, mqtt: mt, nats: nt}, ws: wt}
}

func (e *gateEnv) tcpURL() string { return "tcp://" + e.mqtt.Addr().String() }
func (e *gateEnv) wsURL() string  { return "ws://" + e.ws.Addr().String() + "/mqtt" }

// natsConn is a nats.go client of user.
func (e *gateEnv) natsConn(t *testing.T, user string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("nats://"+e.nats.Addr().String(), nats.UserInfo(user, gatePassword(t, user)), nats.NoReconnect())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// login5 is a 5.0 CONNECT of user.
func login5(t testing.TB, clientID, user string) *paho.Connect {
	return &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		Username: user, UsernameFlag: true, Password: []byte(gatePassword(t, user)), PasswordFlag: true}
}

// refused5 sends cp with paho.golang and returns the CONNACK reason code
// of the refusal.
func refused5(t *testing.T, e *gateEnv, cp *paho.Connect) byte {
	t.Helper()
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), gateWait)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	require.Error(t, err, "CONNECT %q with will %q accepted", cp.ClientID, cp.WillMessage.Topic)
	require.NotNil(t, ack, "a CONNACK, not a dropped connection: %v", err)
	return ack.ReasonCode
}

// dropWithWill connects user with a retained QoS 1 will and drops the TCP
// connection without DISCONNECT.
func dropWithWill(t *testing.T, e *gateEnv, clientID, user, topic, payload string) {
	t.Helper()
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	cp := login5(t, clientID, user)
	cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(payload), QoS: 1, Retain: true}
	ctx, cancel := context.WithTimeout(context.Background(), gateWait)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	require.NoError(t, err)
	require.Equal(t, byte(0), ack.ReasonCode)
	require.NoError(t, nc.Close())
}

// seen5 reads cl's messages until one on marker and returns the ones
// before it as "topic=payload" (retained replays marked "(retained)").
func seen5(t *testing.T, cl *v5, marker string) []string {
	t.Helper()
	var got []string
	deadline := time.After(gateWait)
	for {
		select {
		case m := <-cl.msgs:
			if m.Topic == marker {
				return got
			}
			s := m.Topic + "=" + string(m.Payload)
			if m.Retain {
				s += " (retained)"
			}
			got = append(got, s)
		case <-deadline:
			t.Fatalf("the marker %q did not arrive; before it: %q", marker, got)
			return nil
		}
	}
}

// v3 is a paho.mqtt.golang (3.1.1) client collecting what it receives.
type v3 struct {
	c    mqtt3.Client
	msgs chan mqtt3.Message
}

func opts3(t testing.TB, url, clientID, user string) *mqtt3.ClientOptions {
	return mqtt3.NewClientOptions().AddBroker(url).SetClientID(clientID).SetProtocolVersion(4).
		SetUsername(user).SetPassword(gatePassword(t, user)).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(gateWait).SetWriteTimeout(gateWait)
}

func dial3(t *testing.T, o *mqtt3.ClientOptions) *v3 {
	t.Helper()
	cl := &v3{msgs: make(chan mqtt3.Message, 1000)}
	o.SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { cl.msgs <- m })
	cl.c = mqtt3.NewClient(o)
	tok := cl.c.Connect()
	require.True(t, tok.WaitTimeout(gateWait), "CONNECT timed out")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { cl.c.Disconnect(100) })
	return cl
}

func wait3(t *testing.T, tok mqtt3.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(gateWait), "no acknowledgement within %s", gateWait)
	require.NoError(t, tok.Error())
}

func (cl *v3) sub(t *testing.T, filter string, qos byte) {
	t.Helper()
	tok := cl.c.Subscribe(filter, qos, nil) // nil: the default handler
	wait3(t, tok)
	require.Equal(t, qos, tok.(*mqtt3.SubscribeToken).Result()[filter], "granted QoS")
}

func (cl *v3) pub(t *testing.T, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	wait3(t, cl.c.Publish(topic, qos, retain, payload))
}

// seen3 is seen5 for a 3.1.1 client.
func seen3(t *testing.T, cl *v3, marker string) []string {
	t.Helper()
	var got []string
	deadline := time.After(gateWait)
	for {
		select {
		case m := <-cl.msgs:
			if m.Topic() == marker {
				return got
			}
			s := m.Topic() + "=" + string(m.Payload())
			if m.Retained() {
				s += " (retained)"
			}
			got = append(got, s)
		case <-deadline:
			t.Fatalf("the marker %q did not arrive; before it: %q", marker, got)
			return nil
		}
	}
}

// natsBefore reads sub until a message on marker and returns the ones
// before it as "subject=payload".
func natsBefore(t *testing.T, sub *nats.Subscription, marker string) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(gateWait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		require.NoError(t, err, "the marker %q did not arrive; before it: %q", marker, got)
		if m.Subject == marker {
			return got
		}
		got = append(got, m.Subject+"="+string(m.Data))
	}
}

// Finding 1: a will is a publish of the connecting identity. A user
// allowed to publish only a.b is refused at CONNECT with will topic
// x/willtopic (5.0 CONNACK 0x87, 3.1.1 0x05), and nothing is published or
// retained on it; the same user's allowed will, sent afterwards on the
// same path, is the first thing a NATS "SUB >" of the account sees.
func TestWillForbiddenTopicRefusedAtConnect(t *testing.T) {
	e := startGate(t)
	watch := e.natsConn(t, "alice")
	all, err := watch.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, watch.Flush())

	cp := login5(t, "will-forbidden-5", "willer")
	cp.WillMessage = &paho.WillMessage{Topic: "x/willtopic", Payload: []byte("forbidden will"), QoS: 1, Retain: true}
	require.Equal(t, byte(0x87), refused5(t, e, cp), "5.0: Not authorized")

	c3 := mqtt3.NewClient(opts3(t, e.tcpURL(), "will-forbidden-3", "willer").SetWill("x/willtopic", "forbidden will", 1, true))
	tok := c3.Connect()
	require.True(t, tok.WaitTimeout(gateWait))
	require.Error(t, tok.Error())
	require.Equal(t, byte(0x05), tok.(*mqtt3.ConnectToken).ReturnCode(), "3.1.1: not authorized")
	require.False(t, c3.IsConnected())

	// The refused connections are gone: only the watcher is left.
	require.Eventually(t, func() bool { return e.b.NumConnections() == 1 }, gateWait, 10*time.Millisecond)
	dropWithWill(t, e, "will-allowed", "willer", "a/b", "marker will")
	require.Empty(t, natsBefore(t, all, "a.b"), "only the allowed will was published")
	require.Equal(t, 1, mqtt.Retained(e.b), "only the allowed will was retained")
}

// Finding 1: a will topic that is not a valid topic name or does not map
// to a literal subject is refused at CONNECT: 5.0 CONNACK 0x90 (Topic Name
// invalid), 3.1.1 no successful CONNACK and the connection closed. None is
// published: the allowed will sent after them is the first message.
func TestWillInvalidTopicRefusedAtConnect(t *testing.T) {
	e := startGate(t)
	watch := e.natsConn(t, "alice")
	all, err := watch.SubscribeSync(">")
	require.NoError(t, err)
	require.NoError(t, watch.Flush())

	for _, topic := range []string{"a/+", "a/#", "a b", ">", "a/*"} {
		cp := login5(t, "will-invalid-5", "alice")
		cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte("invalid will"), QoS: 1, Retain: true}
		require.Equal(t, byte(0x90), refused5(t, e, cp), "5.0, will topic %q", topic)

		c3 := mqtt3.NewClient(opts3(t, e.tcpURL(), "will-invalid-3", "alice").SetWill(topic, "invalid will", 1, true))
		tok := c3.Connect()
		require.True(t, tok.WaitTimeout(gateWait))
		require.Error(t, tok.Error(), "3.1.1 (paho.mqtt.golang), will topic %q", topic)
		require.NotEqual(t, byte(0), tok.(*mqtt3.ConnectToken).ReturnCode())
		require.False(t, c3.IsConnected())

		// The same on the wire: nothing but, at most, a failure CONNACK,
		// then the server closes the connection.
		r := dialRaw(t, e.env)
		pw := gatePassword(t, "alice")
		r.send(packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, CleanStart: true, KeepAlive: 30,
			ClientID: []byte("will-invalid-raw"), WillFlag: true, WillQoS: 1, WillTopic: []byte(topic), WillPayload: []byte("invalid will"),
			UsernameFlag: true, Username: []byte("alice"), PasswordFlag: true, Password: []byte(pw)})...)
		_ = r.c.SetReadDeadline(time.Now().Add(gateWait))
		rest, err := io.ReadAll(r.br)
		require.NoError(t, err, "the server closes the connection (EOF, not a timeout), will topic %q", topic)
		if len(rest) > 0 {
			require.True(t, len(rest) == 4 && rest[0] == 0x20 && rest[3] != 0, "3.1.1, will topic %q: only a failure CONNACK, got % x", topic, rest)
		}
	}
	require.Eventually(t, func() bool { return e.b.NumConnections() == 1 }, gateWait, 10*time.Millisecond)
	dropWithWill(t, e, "will-allowed", "alice", "a/b", "marker will")
	require.Empty(t, natsBefore(t, all, "a.b"), "no invalid will was published")
	require.Equal(t, 1, mqtt.Retained(e.b), "no invalid will was retained")
}

// Finding 1: an allowed will (a/b, retain) is published when the TCP
// connection drops, reaches a NATS "SUB >" of its account and no other,
// and is retained in its account only.
func TestAllowedWillDeliveredAndRetainedInItsAccount(t *testing.T) {
	e := startGate(t)
	subs := map[string]*nats.Subscription{}
	conns := map[string]*nats.Conn{}
	for _, u := range []string{"alice", "bob", "gus"} {
		nc := e.natsConn(t, u)
		s, err := nc.SubscribeSync(">")
		require.NoError(t, err)
		require.NoError(t, nc.Flush())
		subs[u], conns[u] = s, nc
	}
	dropWithWill(t, e, "will-drop", "willer", "a/b", "last words")
	m, err := subs["alice"].NextMsg(gateWait)
	require.NoError(t, err)
	require.Equal(t, "a.b", m.Subject)
	require.Equal(t, "last words", string(m.Data))
	// The will was routed before alice got it: a marker published now in
	// account B and in the global account comes after anything it left there.
	for _, u := range []string{"bob", "gus"} {
		require.NoError(t, conns[u].Publish("marker", []byte(u)))
		require.Empty(t, natsBefore(t, subs[u], "marker"), "the will of account A reached %s's account", u)
	}

	// Retained in account A only.
	amy, _ := dial5(t, e.env, login5(t, "amy-ret", "amy"))
	amy.sub(t, "#", 1)
	amy.pub(t, "zz/marker", 1, false, "m")
	require.Equal(t, []string{"a/b=last words (retained)"}, seen5(t, amy, "zz/marker"))
	for _, u := range []string{"bob", "gus"} {
		cl, _ := dial5(t, e.env, login5(t, u+"-ret", u))
		cl.sub(t, "#", 1)
		cl.pub(t, "zz/marker", 1, false, "m")
		require.Empty(t, seen5(t, cl, "zz/marker"), "account A's retained will replayed to %s", u)
	}
	require.Equal(t, 1, mqtt.Retained(e.b))
}

// Finding 2: the retained replay of a new subscription passes the
// subscribe check. A user with subscribe allow [">"], deny ["secret.>",
// "a.secret"] subscribing "#" gets retained ok/x, never retained secret/x
// or a/secret (5.0 and 3.1.1); live delivery is filtered as before.
func TestRetainedReplayFiltersSubscribeDeny(t *testing.T) {
	e := startGate(t)
	pub, _ := dial5(t, e.env, login5(t, "ret-pub", "gus"))
	pub.pub(t, "secret/x", 1, true, "secret one")
	pub.pub(t, "a/secret", 1, true, "secret two")
	pub.pub(t, "ok/x", 1, true, "fine")
	require.Equal(t, 3, mqtt.Retained(e.b))

	p5, _ := dial5(t, e.env, login5(t, "peek-5", "peeker"))
	p5.sub(t, "#", 1)
	p5.pub(t, "zz/marker", 1, false, "m")
	require.Equal(t, []string{"ok/x=fine (retained)"}, seen5(t, p5, "zz/marker"), "5.0")

	p3 := dial3(t, opts3(t, e.tcpURL(), "peek-3", "peeker"))
	p3.sub(t, "#", 1)
	p3.pub(t, "zz/marker", 1, false, "m")
	require.Equal(t, []string{"ok/x=fine (retained)"}, seen3(t, p3, "zz/marker"), "3.1.1")

	// A narrower filter on a denied subject: nothing replayed either.
	p3.sub(t, "a/+", 1)
	p3.pub(t, "zz/marker2", 1, false, "m")
	require.Empty(t, seen3(t, p3, "zz/marker2"), "3.1.1, a/+")

	// Live: the same subscription gets ok/live and not the secrets.
	pub.pub(t, "secret/x", 1, false, "live secret")
	pub.pub(t, "a/secret", 1, false, "live secret")
	pub.pub(t, "ok/live", 1, false, "live ok")
	require.Empty(t, seen3(t, p3, "ok/live"), "3.1.1 live")
	require.Equal(t, []string{"zz/marker=m", "zz/marker2=m"}, seen5(t, p5, "ok/live"), "5.0 live: the 3.1.1 client's markers, then ok/live")
}

// Finding 3: retained messages belong to the account they were published
// in. A user of account B subscribing "#" (MQTT over TCP and over
// WebSocket) gets B's and none of A's; A's subscribers get A's and none
// of B's, live or replayed; the same topic keeps one retained message per
// account; the global account sees neither.
func TestRetainedIsolatedPerAccount(t *testing.T) {
	e := startGate(t)
	liveA, _ := dial5(t, e.env, login5(t, "live-a", "amy"))
	liveA.sub(t, "#", 1)

	pubB, _ := dial5(t, e.env, login5(t, "pub-b", "bob"))
	pubB.pub(t, "both/t", 1, true, "B's")
	pubB.pub(t, "b/only", 1, true, "B only")
	pubA, _ := dial5(t, e.env, login5(t, "pub-a", "alice"))
	pubA.pub(t, "both/t", 1, true, "A's")
	pubA.pub(t, "a/only", 1, true, "A only")
	// B published first: anything of B's would be before A's last.
	require.Equal(t, []string{"both/t=A's"}, seen5(t, liveA, "a/only"), "B's retained publishes reached a live subscriber of A")
	require.Equal(t, 4, mqtt.Retained(e.b), "both/t is retained once in each account")

	wantA := []string{"both/t=A's (retained)", "a/only=A only (retained)"}
	wantB := []string{"both/t=B's (retained)", "b/only=B only (retained)"}
	for _, c := range []struct {
		name, user string
		ws         bool
		want       []string
	}{
		{"A over TCP", "amy", false, wantA},
		{"A over WebSocket", "amy", true, wantA},
		{"B over TCP", "bea", false, wantB},
		{"B over WebSocket", "bea", true, wantB},
		{"global over TCP", "gus", false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			url := e.tcpURL()
			if c.ws {
				url = e.wsURL()
			}
			id := strings.ReplaceAll(c.name, " ", "-")
			cl := dial3(t, opts3(t, url, id, c.user))
			cl.sub(t, "#", 1)
			cl.pub(t, "zz/marker", 1, false, "m")
			require.ElementsMatch(t, c.want, seen3(t, cl, "zz/marker"))
			if c.user == "gus" {
				return
			}
			cl5, _ := dial5(t, e.env, login5(t, id+"-5", c.user))
			cl5.sub(t, "#", 1)
			cl5.pub(t, "zz/marker", 1, false, "m")
			require.ElementsMatch(t, c.want, seen5(t, cl5, "zz/marker"), "5.0")
		})
	}

	// B deleting its retained both/t (an empty retained payload) leaves A's.
	pubB.pub(t, "both/t", 1, true, "")
	require.Equal(t, 3, mqtt.Retained(e.b))
	cl := dial3(t, opts3(t, e.wsURL(), "after-delete", "amy"))
	cl.sub(t, "zz/marker", 1)
	cl.sub(t, "both/t", 1)
	cl.pub(t, "zz/marker", 1, false, "m")
	require.Equal(t, []string{"both/t=A's (retained)"}, seen3(t, cl, "zz/marker"))
}

// TestGateSecretsNeverLogged runs the gate tests with a debug-level JSON
// log and checks that no password of theirs reached it.
func TestGateSecretsNeverLogged(t *testing.T) {
	for name, f := range map[string]func(*testing.T){
		"forbidden will":    TestWillForbiddenTopicRefusedAtConnect,
		"invalid will":      TestWillInvalidTopicRefusedAtConnect,
		"allowed will":      TestAllowedWillDeliveredAndRetainedInItsAccount,
		"retained replay":   TestRetainedReplayFiltersSubscribeDeny,
		"retained accounts": TestRetainedIsolatedPerAccount,
	} {
		t.Run(name, f)
	}
	out := gateLog.String()
	require.NotEmpty(t, out, "the brokers logged at all")
	for _, u := range gateUsers {
		require.NotContains(t, out, u.Password, "the password of %s reached the log", u.Name)
	}
}
