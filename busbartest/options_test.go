package busbartest_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/busbartest"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/websocket"
)

// hostAuth is a host application's own Authenticator: tokens "app-<name>".
var hostAuth = auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
	if name, ok := strings.CutPrefix(c.Token, "app-"); ok && name != "" {
		return &auth.Identity{Name: name}, true, nil
	}
	return nil, false, nil
})

// upgrade sends a WebSocket upgrade request to url with header lines and
// returns the status.
func upgrade(t *testing.T, url string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, strings.Replace(url, "ws://", "http://", 1), nil)
	require.NoError(t, err)
	req.Header = header.Clone()
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// TestConfigText (issue 18): a test broker from configuration text, with
// WebSocket handshake authentication, on free ports whatever the text
// says.
func TestConfigText(t *testing.T) {
	s := busbartest.Start(t, busbartest.Options{Config: `
port: 4222
authorization { users [ {user: svc, api_key: "key-1"}, {user: ops, password: "ops-pw"} ] }
websocket {
  port: 8080
  no_tls: true
  handshake { required: true, key_auth { header: "apikey" } }
}
mqtt { port: 1883, max_packet_size: 4KB }
`})
	require.NotContains(t, s.NATSURL, ":4222")
	require.Equal(t, http.StatusUnauthorized, upgrade(t, s.WSURL, http.Header{}), "required: no key")
	require.Equal(t, http.StatusUnauthorized, upgrade(t, s.WSURL, http.Header{"Apikey": {"wrong"}}))
	nc, err := nats.Connect(s.WSURL, nats.WebSocketConnectionHeaders(http.Header{"Apikey": {"key-1"}}), nats.MaxReconnects(0))
	require.NoError(t, err, "the key at the handshake")
	nc.Close()
	tcp, err := nats.Connect(s.NATSURL, nats.UserInfo("ops", "ops-pw"))
	require.NoError(t, err)
	tcp.Close()
	require.Equal(t, uint32(4096), connackMaxPacket(t, s.MQTTURL, "ops", "ops-pw"), "mqtt { max_packet_size }")
}

// TestTransportOptions: the transports' own options, without text.
func TestTransportOptions(t *testing.T) {
	s := busbartest.Start(t, busbartest.Options{
		Users:     []auth.User{{Name: "svc", APIKey: "key-2"}, {Name: "ops", Password: "p"}},
		WebSocket: websocket.Options{Handshake: websocket.Handshake{Required: true, KeyAuth: websocket.Source{Query: "key"}}},
		MQTT:      mqtt.Options{MaxPacketSize: 2048},
	})
	require.Equal(t, http.StatusUnauthorized, upgrade(t, s.WSURL, http.Header{}))
	nc, err := nats.Connect(s.WSURL+"/?key=key-2", nats.MaxReconnects(0))
	require.NoError(t, err)
	nc.Close()
	require.Equal(t, uint32(2048), connackMaxPacket(t, s.MQTTURL, "ops", "p"))
}

// TestUsersChainWithTheHostAuthenticator: Users are asked after the
// broker's own Authenticator, which keeps working, also after SetUsers.
func TestUsersChainWithTheHostAuthenticator(t *testing.T) {
	for _, o := range []busbartest.Options{
		{Broker: broker.Options{Authenticator: hostAuth}, Users: []auth.User{{Name: "ops", Password: "one"}}},
		{Broker: broker.Options{Authenticator: hostAuth}, Config: `authorization { users [ {user: cfg, password: "c"} ] }`, Users: []auth.User{{Name: "ops", Password: "one"}}},
	} {
		s := busbartest.Start(t, o)
		for _, opt := range []nats.Option{nats.Token("app-ann"), nats.UserInfo("ops", "one")} {
			nc, err := nats.Connect(s.NATSURL, opt, nats.MaxReconnects(0))
			require.NoError(t, err)
			nc.Close()
		}
		if o.Config != "" {
			s.Conn(t, nats.UserInfo("cfg", "c")) // the text's users too
		}
		require.NoError(t, s.SetUsers(auth.User{Name: "ops", Password: "two"}))
		s.Conn(t, nats.Token("app-ann"))
		s.Conn(t, nats.UserInfo("ops", "two"))
		_, err := nats.Connect(s.NATSURL, nats.UserInfo("ops", "one"), nats.MaxReconnects(0))
		require.ErrorIs(t, err, nats.ErrAuthorization)
	}
}

// connackMaxPacket connects paho (MQTT 5.0) and returns the CONNACK's
// Maximum Packet Size.
func connackMaxPacket(t *testing.T, url, user, pass string) uint32 {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tcp://"), 5*time.Second)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	cp := &paho.Connect{ClientID: "probe", CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = user, true, []byte(pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	require.NoError(t, err)
	defer c.Disconnect(&paho.Disconnect{})
	require.NotNil(t, ack.Properties.MaximumPacketSize)
	return *ack.Properties.MaximumPacketSize
}
