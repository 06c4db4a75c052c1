package config_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// connack311 sends a raw MQTT 3.1.1 CONNECT (user and password when
// not nil) and returns the CONNACK return code.
func connack311(t *testing.T, addr string, user, pass *string) byte {
	t.Helper()
	flags := byte(0x02) // clean session
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0, 0, 30, 0, 2, 'c', '1'}
	for _, f := range []struct {
		s   *string
		bit byte
	}{{user, 0x80}, {pass, 0x40}} {
		if f.s != nil {
			flags |= f.bit
			body = append(body, byte(len(*f.s)>>8), byte(len(*f.s)))
			body = append(body, *f.s...)
		}
	}
	body[7] = flags
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = nc.Write(append([]byte{0x10, byte(len(body))}, body...))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_, err = io.ReadFull(nc, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2}, ack[:2], "a CONNACK")
	return ack[3]
}

// connack5 connects with paho.golang (MQTT 5.0) and returns the CONNACK
// reason code.
func connack5(t *testing.T, addr string, user *string, pass string) byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	cp := &paho.Connect{ClientID: "c5", CleanStart: true, KeepAlive: 30, Password: []byte(pass), PasswordFlag: true}
	if user != nil {
		cp.Username, cp.UsernameFlag = *user, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	require.NotNil(t, ack, "a CONNACK (err %v)", err)
	if ack.ReasonCode == 0 {
		require.NoError(t, err)
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return ack.ReasonCode
}

// mqtt3Connect connects paho.mqtt.golang (3.1.1) to url as user/pass.
func mqtt3Connect(t *testing.T, url, id, user, pass string) (mqtt3.Client, error) {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
	c := mqtt3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(100) })
	}
	return c, tok.Error()
}

// TestMQTTAuthorizationToken (issue 15, finding 8): with mqtt {
// authorization { token } } an MQTT client presents the token as its
// password, with any user name or none, over TCP and over WebSocket
// (MQTT over WebSocket takes the mqtt {} block's authorization, as
// nats-server); a wrong token gets 0x04/0x86 with a user name and
// 0x05/0x87 without. NATS clients are not covered by the MQTT token.
func TestMQTTAuthorizationToken(t *testing.T) {
	_, addrs := serveConf(t, `listen: "127.0.0.1:-1"
mqtt { listen: "127.0.0.1:-1", authorization { token: "s3cret-token", timeout: 2.0 } }
websocket { listen: "127.0.0.1:-1", no_tls: true }
`)
	str := func(s string) *string { return &s }
	m := addrs["mqtt"]
	require.Equal(t, byte(0x00), connack311(t, m, str("anyone"), str("s3cret-token")), "3.1.1: any user name, token as password")
	require.Equal(t, byte(0x00), connack311(t, m, str(""), str("s3cret-token")), "3.1.1: empty user name")
	require.Equal(t, byte(0x04), connack311(t, m, str("anyone"), str("wrong")), "3.1.1: wrong token, bad user name or password")
	require.Equal(t, byte(0x05), connack311(t, m, nil, nil), "3.1.1: nothing presented, not authorized")
	require.Equal(t, byte(0x00), connack5(t, m, str("anyone"), "s3cret-token"), "5.0: user name and token")
	require.Equal(t, byte(0x00), connack5(t, m, nil, "s3cret-token"), "5.0: token with no user name")
	require.Equal(t, byte(0x86), connack5(t, m, str("anyone"), "wrong"), "5.0: wrong token with a user name")
	require.Equal(t, byte(0x87), connack5(t, m, nil, "wrong"), "5.0: wrong token without a user name")

	// Real clients: the token lets paho publish, over TCP and over
	// WebSocket, to a NATS subscriber (the main block has no auth).
	nc, err := nats.Connect("nats://"+addrs["nats"], nats.NoReconnect())
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.SubscribeSync("token.>")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	for _, url := range []string{"tcp://" + m, "ws://" + addrs["websocket"] + "/"} {
		c, err := mqtt3Connect(t, url, "tok-client", "device-7", "s3cret-token")
		require.NoError(t, err, url)
		tok := c.Publish("token/x", 1, false, url)
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		msg, err := sub.NextMsg(5 * time.Second)
		require.NoError(t, err, url)
		require.Equal(t, url, string(msg.Data))
		c.Disconnect(100)

		_, err = mqtt3Connect(t, url, "bad-client", "device-7", "not-the-token")
		require.Error(t, err, url+": a wrong token is refused")
	}
}
