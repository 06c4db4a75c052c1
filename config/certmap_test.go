package config_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/natsproto"
)

// serveConf starts a broker and its listeners from a configuration text
// (ports -1: free ones) and returns it with each listener's address by
// transport name ("nats", "mqtt", "websocket").
func serveConf(t *testing.T, text string) (*broker.Broker, map[string]string) {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "test.conf")
	require.NoError(t, err)
	opts, err := cfg.BrokerOptions(nil)
	require.NoError(t, err)
	b, err := broker.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
	})
	ts, err := cfg.Transports()
	require.NoError(t, err)
	addrs := map[string]string{}
	for _, tr := range ts {
		require.NoError(t, tr.Listen())
		require.NoError(t, b.Start(tr))
		addrs[tr.Name()] = tr.Addr().String()
	}
	return b, addrs
}

// watch subscribes in-process as a password user and returns the
// subject of each message it gets.
func watch(t *testing.T, b *broker.Broker, subject string) chan string {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo("watcher", "wpw"), nats.NoReconnect())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	got := make(chan string, 10)
	_, err = nc.Subscribe(subject, func(m *nats.Msg) { got <- m.Subject })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	return got
}

// onlyAllowed checks that the watcher got allowed.x and nothing else.
func onlyAllowed(t *testing.T, got chan string) {
	t.Helper()
	select {
	case s := <-got:
		require.Equal(t, "allowed.x", s)
	case <-time.After(5 * time.Second):
		t.Fatal("the allowed publish did not arrive")
	}
	select {
	case s := <-got:
		t.Fatalf("a denied publish arrived: %s", s)
	case <-time.After(300 * time.Millisecond):
	}
}

const mappedUsers = `
authorization {
  users [
    {user: "alice@example.com", permissions: {publish: ["allowed.>"], subscribe: ["allowed.>", "_INBOX.>"]}}
    {user: watcher, password: wpw}
  ]
}
`

// TestVerifyAndMapUserNeedsNoPassword (issue 15, finding 7): a user with
// no password loads when a listener's tls { verify_and_map } can name it;
// the client certificate (email alice@example.com) logs in as it, with
// its permissions; its name without the certificate is refused. Run for
// the top-level tls {} (nats.go over TLS), websocket { tls {} } (nats.go
// over wss://) and mqtt { tls {} } (paho 3.1.1 over TLS).
func TestVerifyAndMapUserNeedsNoPassword(t *testing.T) {
	f := testcert.Write(t)
	tlsBlock := fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify_and_map: true }", f.ServerCert, f.ServerKey, f.CA)
	clientCert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	require.NoError(t, err)
	withCert := &tls.Config{RootCAs: f.Pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: f.Pool, MinVersion: tls.VersionTLS12}

	// nameOnly: a plain path where the user's name alone is presented.
	nameOnly := func(t *testing.T, b *broker.Broker) {
		_, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)), nats.UserInfo("alice@example.com", ""), nats.NoReconnect())
		require.ErrorIs(t, err, nats.ErrAuthorization, "the name alone, without the certificate")
	}
	natsClient := func(t *testing.T, url string) {
		b, addrs := serveConf(t, strings.ReplaceAll(url, "TLS", tlsBlock)+mappedUsers)
		got := watch(t, b, ">")
		u := "tls://" + addrs["nats"]
		if strings.Contains(url, "websocket") {
			u = "wss://" + addrs["websocket"]
		}
		nc, err := nats.Connect(u, nats.Secure(withCert), nats.NoReconnect(), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		require.NoError(t, err, "the certificate maps to alice@example.com")
		defer nc.Close()
		require.NoError(t, nc.Publish("denied.x", []byte("no")))
		require.NoError(t, nc.Publish("allowed.x", []byte("yes")))
		require.NoError(t, nc.Flush())
		onlyAllowed(t, got)

		_, err = nats.Connect(u, nats.Secure(noCert), nats.UserInfo("alice@example.com", ""), nats.NoReconnect())
		require.Error(t, err, "no certificate: the TLS handshake is refused")
		nameOnly(t, b)
	}
	t.Run("top level tls", func(t *testing.T) {
		natsClient(t, "listen: \"127.0.0.1:-1\"\nTLS\n")
	})
	t.Run("websocket tls", func(t *testing.T) {
		natsClient(t, "listen: \"127.0.0.1:-1\"\nwebsocket { listen: \"127.0.0.1:-1\"\nTLS }\n")
	})
	t.Run("mqtt tls", func(t *testing.T) {
		b, addrs := serveConf(t, "listen: \"127.0.0.1:-1\"\nmqtt { listen: \"127.0.0.1:-1\"\n"+tlsBlock+" }\n"+mappedUsers)
		got := watch(t, b, ">")
		connect := func(cfg *tls.Config, user string) (mqtt3.Client, error) {
			o := mqtt3.NewClientOptions().AddBroker("ssl://" + addrs["mqtt"]).SetClientID("alice-device").
				SetTLSConfig(cfg).SetUsername(user).SetAutoReconnect(false).SetConnectTimeout(3 * time.Second)
			c := mqtt3.NewClient(o)
			tok := c.Connect()
			if !tok.WaitTimeout(5 * time.Second) {
				return nil, fmt.Errorf("connect timed out")
			}
			return c, tok.Error()
		}
		c, err := connect(withCert, "")
		require.NoError(t, err, "the certificate maps to alice@example.com")
		defer c.Disconnect(100)
		tok := c.Publish("allowed/x", 1, false, "yes")
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		c.Publish("denied/x", 0, false, "no").WaitTimeout(time.Second)
		onlyAllowed(t, got)

		_, err = connect(noCert, "alice@example.com")
		require.Error(t, err, "no certificate: the TLS handshake is refused")
		nameOnly(t, b)
		nc, err := nats.Connect("nats://"+addrs["nats"], nats.UserInfo("alice@example.com", ""), nats.NoReconnect())
		if err == nil {
			nc.Close()
		}
		require.ErrorIs(t, err, nats.ErrAuthorization, "the NATS listener does not map: the name alone is refused")
	})
}
