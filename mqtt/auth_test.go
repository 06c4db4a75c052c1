package mqtt_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
)

func startAuth(t *testing.T) *env {
	t.Helper()
	a, err := auth.New(auth.Options{Users: []auth.User{
		{Name: "alice", Password: "apw"},
		{Name: "bob", Password: "bpw"},
		{Name: "natsonly", Password: "npw", ConnTypes: auth.ConnTypes(0).Add(auth.ConnStandard)},
		{Name: "limited", Password: "lpw", Perms: &auth.Permissions{
			Publish:   &auth.SubjectPermission{Allow: []string{"ok.>"}},
			Subscribe: &auth.SubjectPermission{Allow: []string{"ok.>"}},
		}},
	}})
	require.NoError(t, err)
	return start(t, broker.Options{Authenticator: a}, mqtt.Options{})
}

// connack311 sends a 3.1.1 CONNECT with credentials and returns the code.
func connack311(t *testing.T, e *env, clientID, user, pass string, clean bool) byte {
	t.Helper()
	flags := byte(0xC0)
	if clean {
		flags |= 0x02
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, flags, 0, 60}
	for _, s := range []string{clientID, user, pass} {
		body = append(body, byte(len(s)>>8), byte(len(s)))
		body = append(body, s...)
	}
	r := dialRaw(t, e)
	r.send(append([]byte{0x10, byte(len(body))}, body...)...)
	_, code := r.connack()
	if code != 0 {
		r.closed()
	}
	return code
}

// CONNACK codes for credentials (3.1.1: 0x04/0x05) and connection types.
func TestMQTTAuthConnackCodes(t *testing.T) {
	e := startAuth(t)
	require.Equal(t, byte(0x00), connack311(t, e, "a1", "alice", "apw", true))
	require.Equal(t, byte(0x04), connack311(t, e, "a2", "alice", "wrong", true), "bad user name or password")
	require.Equal(t, byte(0x05), connack311(t, e, "a3", "natsonly", "npw", true), "MQTT not in allowed_connection_types")

	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ack, err := c.Connect(context.Background(), &paho.Connect{ClientID: "v5", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("nope"), PasswordFlag: true})
	require.Error(t, err)
	require.NotNil(t, ack)
	require.Equal(t, byte(0x86), ack.ReasonCode, "5.0: bad user name or password")
}

// Row 8 and SPEC: a client identifier belongs to the identity that created
// its session; another identity is refused and never resumes it.
func TestMQTTClientIDBelongsToItsIdentity(t *testing.T) {
	e := startAuth(t)
	require.Equal(t, byte(0x00), connack311(t, e, "device-1", "alice", "apw", false))
	require.Equal(t, byte(0x05), connack311(t, e, "device-1", "bob", "bpw", false), "bob may not take alice's session")
	require.Equal(t, byte(0x05), connack311(t, e, "device-1", "bob", "bpw", true), "nor discard it with clean session")
	require.Equal(t, byte(0x00), connack311(t, e, "device-1", "alice", "apw", false))
	require.Eventually(t, func() bool { return e.b.NumConnections() == 1 }, 2*time.Second, 5*time.Millisecond,
		"only alice's live connection counts: refused ones are released, the taken-over one closed")
}

// Permissions apply to the mapped subjects: publish refused with PUBACK
// 0x87 (5.0), subscribe refused with SUBACK 0x87.
func TestMQTTPermissions(t *testing.T) {
	e := startAuth(t)
	cl, _ := dial5(t, e, &paho.Connect{ClientID: "l", CleanStart: true, Username: "limited", UsernameFlag: true, Password: []byte("lpw"), PasswordFlag: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, _ := cl.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ok/x", QoS: 1}, {Topic: "secret/x", QoS: 1}}})
	require.NotNil(t, sa)
	require.Equal(t, []byte{1, 0x87}, sa.Reasons)
	_, err := cl.c.Publish(ctx, &paho.Publish{Topic: "secret/y", QoS: 1, Payload: []byte("no")})
	require.ErrorContains(t, err, "not authorized", "PUBACK 0x87")
	cl.pub(t, "ok/x", 1, false, "yes")
	require.Equal(t, "yes", string(cl.next(t).Payload))
}

// SPEC: a user's max_connections: MQTT 5 CONNACK 0x97, 3.1.1 0x03.
func TestMQTTPerUserMaxConnections(t *testing.T) {
	a, err := auth.New(auth.Options{Users: []auth.User{{Name: "one", Password: "pw", MaxConns: 1}}})
	require.NoError(t, err)
	e := start(t, broker.Options{Authenticator: a}, mqtt.Options{})
	dial5(t, e, &paho.Connect{ClientID: "first", CleanStart: true, Username: "one", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	require.Equal(t, byte(0x03), connack311(t, e, "second", "one", "pw", true))
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ack, err := c.Connect(context.Background(), &paho.Connect{ClientID: "third", CleanStart: true, Username: "one", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true})
	require.Error(t, err)
	require.NotNil(t, ack)
	require.Equal(t, byte(0x97), ack.ReasonCode)
}
