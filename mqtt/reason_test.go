package mqtt_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// Reason Strings on refusals a user must act on (5.0): CONNACK, SUBACK,
// PUBACK/PUBREC and DISCONNECT carry a short fixed text beside the code,
// never a credential, only where the client's Request Problem Information
// allows it [MQTT-3.1.2-29] and only when the packet stays within the
// client's Maximum Packet Size ([MQTT-3.2.2-19], [MQTT-3.4.2-2],
// [MQTT-3.5.2-2], [MQTT-3.9.2-1], [MQTT-3.14.2-3]; checklist row 28).
// Expected packets are written out byte by byte.

const (
	publishDenied   = "not authorized to publish to this topic"
	subscribeDenied = "not authorized to subscribe to this topic filter"
)

// reasonProp is a Reason String property (0x1F).
func reasonProp(s string) []byte {
	return append([]byte{0x1F, byte(len(s) >> 8), byte(len(s))}, s...)
}

// frame prefixes body with the first byte and remaining length.
func frame(first byte, body ...byte) []byte {
	return append(append([]byte{first}, encodeLen(len(body))...), body...)
}

// withProps is a property length followed by props.
func withProps(props []byte) []byte { return append(encodeLen(len(props)), props...) }

// disconnectWithReason is a 5.0 DISCONNECT with code and a Reason String.
func disconnectWithReason(code byte, reason string) []byte {
	return frame(0xE0, append([]byte{code}, withProps(reasonProp(reason))...)...)
}

// ackWithReason is a 5.0 PUBACK/PUBREC (first byte) for packet id 1 with
// code and a Reason String; ackBare is the same without it.
func ackWithReason(first, code byte, reason string) []byte {
	return frame(first, append([]byte{0, 1, code}, withProps(reasonProp(reason))...)...)
}

func ackBare(first, code byte) []byte { return frame(first, 0, 1, code) }

// subackWithReason is a 5.0 SUBACK for packet id 1 with one code.
func subackWithReason(code byte, reason string) []byte {
	return frame(0x90, append(append([]byte{0, 1}, withProps(reasonProp(reason))...), code)...)
}

// login is a 5.0 CONNECT of user with password, clean start; set adds
// properties.
func login(id, user, pass string, set func(*packet.Properties)) []byte {
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte(id), CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pass)}
	if set != nil {
		set(&cp.Props)
	}
	return packet.AppendConnect(nil, cp)
}

// accepted sends CONNECT and checks its CONNACK accepts.
func accepted(t *testing.T, e *env, connect []byte) *raw {
	t.Helper()
	r := dialRaw(t, e)
	r.send(connect...)
	_, code := r.connack()
	require.Zero(t, code)
	return r
}

// TestMQTT_3_2_2_19_ConnackReasonString: a refused CONNECT gets its reason
// in the CONNACK, never the password it sent, with Request Problem
// Information 0 too (CONNACK may carry one [MQTT-3.1.2-29]); not when it
// would pass the client's Maximum Packet Size [MQTT-3.2.2-19]; 3.1.1 has
// no properties.
func TestMQTT_3_2_2_19_ConnackReasonString(t *testing.T) {
	e := startAuth(t)
	const secret = "wrong-s3cret-pw"
	bad := frame(0x20, append([]byte{0x00, 0x86}, withProps(reasonProp("bad user name or password"))...)...)
	cases := []struct {
		name    string
		connect []byte
		want    []byte
	}{
		{"default", login("r1", "alice", secret, nil), bad},
		{"request problem information 0", login("r2", "alice", secret, func(p *packet.Properties) { p.SetRequestProblemInfo(0) }), bad},
		{"over maximum packet size", login("r3", "alice", secret, func(p *packet.Properties) { p.SetMaximumPacketSize(8) }),
			[]byte{0x20, 3, 0x00, 0x86, 0}},
		{"3.1.1", packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, ClientID: []byte("r4"), CleanStart: true,
			UsernameFlag: true, Username: []byte("alice"), PasswordFlag: true, Password: []byte(secret)}),
			[]byte{0x20, 2, 0x00, 0x04}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, e)
			r.send(tc.connect...)
			r.expectPacket(tc.want, "CONNACK")
			r.closed()
		})
	}
	// Each refusal is told apart, in fixed words.
	r := dialRaw(t, e)
	r.send(login("r5", "natsonly", "npw", nil)...)
	r.expectPacket(frame(0x20, append([]byte{0x00, 0x87}, withProps(reasonProp("not authorized: authentication failed"))...)...), "CONNACK 0x87")
	r.closed()
	r = dialRaw(t, e)
	cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("r6"), CleanStart: true, KeepAlive: 60,
		UsernameFlag: true, Username: []byte("limited"), PasswordFlag: true, Password: []byte("lpw"),
		WillFlag: true, WillTopic: []byte("no/will"), WillPayload: []byte("w")}
	r.send(packet.AppendConnect(nil, cp)...)
	r.expectPacket(frame(0x20, append([]byte{0x00, 0x87}, withProps(reasonProp("not authorized to publish to the will topic"))...)...), "CONNACK 0x87 for the will")
	r.closed()
}

// TestMQTT_3_2_2_19_ConnackReasonPaho: paho.golang hands the Reason
// String to the application.
func TestMQTT_3_2_2_19_ConnackReasonPaho(t *testing.T) {
	e := startAuth(t)
	c := paho.NewClient(paho.ClientConfig{Conn: dialTCP(t, e)})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "p1", CleanStart: true, KeepAlive: 30,
		Username: "alice", UsernameFlag: true, Password: []byte("not-it"), PasswordFlag: true})
	require.Error(t, err)
	require.NotNil(t, ack)
	require.Equal(t, byte(0x86), ack.ReasonCode)
	require.Equal(t, "bad user name or password", ack.Properties.ReasonString)
}

// refusals publishes QoS 1 and 2 to a topic the user "limited" may not
// publish to and subscribes to a filter it may not subscribe to, and
// checks each refusal's exact bytes.
func refusals(t *testing.T, r *raw, wantPuback, wantPubrec, wantSuback []byte) {
	t.Helper()
	r.send(0x32, 9, 0, 4, 'n', 'o', '/', 'x', 0, 1, 0) // PUBLISH QoS 1 "no/x", id 1, no properties
	r.expectPacket(wantPuback, "PUBACK")
	r.send(0x34, 9, 0, 4, 'n', 'o', '/', 'x', 0, 1, 0) // PUBLISH QoS 2
	r.expectPacket(wantPubrec, "PUBREC")
	r.send(0x82, 10, 0, 1, 0, 0, 4, 'n', 'o', '/', 'x', 1) // SUBSCRIBE "no/x" QoS 1
	r.expectPacket(wantSuback, "SUBACK")
}

// TestMQTT_3_1_2_29_RequestProblemInformation: PUBACK, PUBREC and SUBACK
// refusals carry a Reason String unless the client's CONNECT set Request
// Problem Information to 0.
func TestMQTT_3_1_2_29_RequestProblemInformation(t *testing.T) {
	e := startAuth(t)
	withReason := func(t *testing.T, r *raw) {
		refusals(t, r, ackWithReason(0x40, 0x87, publishDenied), ackWithReason(0x50, 0x87, publishDenied),
			subackWithReason(0x87, subscribeDenied))
	}
	t.Run("absent (1)", func(t *testing.T) {
		withReason(t, accepted(t, e, login("q1", "limited", "lpw", nil)))
	})
	t.Run("1", func(t *testing.T) {
		withReason(t, accepted(t, e, login("q2", "limited", "lpw", func(p *packet.Properties) { p.SetRequestProblemInfo(1) })))
	})
	t.Run("0", func(t *testing.T) {
		r := accepted(t, e, login("q3", "limited", "lpw", func(p *packet.Properties) { p.SetRequestProblemInfo(0) }))
		refusals(t, r, ackBare(0x40, 0x87), ackBare(0x50, 0x87), frame(0x90, 0, 1, 0, 0x87))
	})
}

// TestMQTT_3_4_2_2_ReasonStringOverMaximumPacketSize: a Reason String that
// would take a PUBACK, PUBREC or SUBACK past the client's Maximum Packet
// Size is left out ([MQTT-3.4.2-2], [MQTT-3.5.2-2], [MQTT-3.9.2-1]).
func TestMQTT_3_4_2_2_ReasonStringOverMaximumPacketSize(t *testing.T) {
	e := startAuth(t)
	r := accepted(t, e, login("m1", "limited", "lpw", func(p *packet.Properties) { p.SetMaximumPacketSize(16) }))
	refusals(t, r, ackBare(0x40, 0x87), ackBare(0x50, 0x87), frame(0x90, 0, 1, 0, 0x87))
}

// TestMQTT_3_1_2_29_AckReasonsPaho: paho.golang reports the Reason Strings
// of a refused publish and subscribe.
func TestMQTT_3_1_2_29_AckReasonsPaho(t *testing.T) {
	e := startAuth(t)
	cl, _ := dial5(t, e, &paho.Connect{ClientID: "pa", CleanStart: true, KeepAlive: 30,
		Username: "limited", UsernameFlag: true, Password: []byte("lpw"), PasswordFlag: true,
		Properties: &paho.ConnectProperties{RequestProblemInfo: true}})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	pr, err := cl.c.Publish(ctx, &paho.Publish{Topic: "no/x", QoS: 1, Payload: []byte("x")})
	require.Error(t, err)
	require.Equal(t, byte(0x87), pr.ReasonCode)
	require.Equal(t, publishDenied, pr.Properties.ReasonString)
	sa, err := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "no/x", QoS: 1}}})
	require.ErrorContains(t, err, subscribeDenied)
	require.Equal(t, []byte{0x87}, sa.Reasons)
	require.Equal(t, subscribeDenied, sa.Properties.ReasonString)
}

// TestMQTT_3_14_2_3_DisconnectReasonString: the server's DISCONNECT says
// why, with Request Problem Information 0 too (DISCONNECT may carry one
// [MQTT-3.1.2-29]), unless that would pass the client's Maximum Packet
// Size [MQTT-3.14.2-3].
func TestMQTT_3_14_2_3_DisconnectReasonString(t *testing.T) {
	e := start(t, broker.Options{MaxPayload: 16}, mqtt.Options{})
	big := append([]byte{0x30, 24, 0, 1, 't', 0}, strings.Repeat("x", 20)...) // QoS 0, 20-byte payload
	tooBig := disconnectWithReason(0x95, "a payload of 20 bytes is over the server's max_payload (16)")
	cases := []struct {
		name string
		set  func(*packet.Properties)
		want []byte
	}{
		{"default", nil, tooBig},
		{"request problem information 0", func(p *packet.Properties) { p.SetRequestProblemInfo(0) }, tooBig},
		{"over maximum packet size", func(p *packet.Properties) { p.SetMaximumPacketSize(8) }, []byte{0xE0, 1, 0x95}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("d-" + tc.name), CleanStart: true, KeepAlive: 60}
			if tc.set != nil {
				tc.set(&cp.Props)
			}
			r := accepted(t, e, packet.AppendConnect(nil, cp))
			r.send(big...)
			r.expectPacket(tc.want, "DISCONNECT 0x95")
			r.closed()
		})
	}
	t.Run("topic alias", func(t *testing.T) {
		r := accepted(t, e, connect5)
		r.send(0x30, 8, 0, 1, 't', 3, 0x23, 0, 0, 'x') // Topic Alias 0
		r.expectPacket(disconnectWithReason(0x94, "topic alias 0 is not valid"), "DISCONNECT 0x94")
		r.closed()
	})
	t.Run("session taken over", func(t *testing.T) {
		r := accepted(t, e, connect5)
		accepted(t, e, connect5)
		r.expectPacket(disconnectWithReason(0x8E, "another connection with this client identifier took the session over"), "DISCONNECT 0x8E")
		r.closed()
	})
}

// TestMQTT_3_14_2_3_ReloadDisconnectReason: a reload that no longer
// authorizes a connected user ends its connection with DISCONNECT 0x87
// and a Reason String (before, the socket was just closed); paho.golang
// hands both to the application.
func TestMQTT_3_14_2_3_ReloadDisconnectReason(t *testing.T) {
	users := func(names ...string) auth.Authenticator {
		var us []auth.User
		for _, n := range names {
			us = append(us, auth.User{Name: n, Password: n + "-pw"})
		}
		a, err := auth.New(auth.Options{Users: us})
		require.NoError(t, err)
		return a
	}
	e := start(t, broker.Options{Authenticator: users("alice", "bob")}, mqtt.Options{})
	r := accepted(t, e, login("a", "alice", "alice-pw", nil))
	got := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: dialTCP(t, e), OnServerDisconnect: func(d *paho.Disconnect) { got <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := c.Connect(ctx, &paho.Connect{ClientID: "b", CleanStart: true, KeepAlive: 30,
		Username: "alice", UsernameFlag: true, Password: []byte("alice-pw"), PasswordFlag: true})
	require.NoError(t, err)

	require.NoError(t, e.b.Reload(broker.Options{Authenticator: users("bob")}))
	const why = "no longer authorized after a configuration reload"
	r.expectPacket(disconnectWithReason(0x87, why), "DISCONNECT 0x87")
	r.closed()
	select {
	case d := <-got:
		require.Equal(t, byte(0x87), d.ReasonCode)
		require.Equal(t, why, d.Properties.ReasonString)
	case <-ctx.Done():
		t.Fatal("paho.golang got no DISCONNECT")
	}
}

func dialTCP(t testing.TB, e *env) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	return nc
}
