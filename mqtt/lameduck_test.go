package mqtt_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// lameDuckOpts: short enough for a test, long enough to see the phases.
var lameDuckOpts = broker.Options{LameDuckDuration: time.Second, LameDuckGracePeriod: 50 * time.Millisecond}

func lameDuck(t *testing.T, b *broker.Broker) chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- b.LameDuck(context.Background()) }()
	return done
}

func waitLameDuck(t *testing.T, done chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("LameDuck did not return")
	}
}

// TestLameDuckMQTT5Disconnect: a 5.0 client (paho.golang) closed by lame
// duck mode receives DISCONNECT with reason code 0x8B, Server shutting
// down, before the socket closes.
func TestLameDuckMQTT5Disconnect(t *testing.T) {
	e := start(t, lameDuckOpts, mqtt.Options{})
	nc, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	got := make(chan byte, 1)
	c := paho.NewClient(paho.ClientConfig{
		Conn:               nc,
		OnServerDisconnect: func(d *paho.Disconnect) { got <- d.ReasonCode },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{ClientID: "ld5", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)

	done := lameDuck(t, e.b)
	select {
	case code := <-got:
		require.Equal(t, byte(packet.ServerShuttingDown), code)
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT from the lame duck")
	}
	waitLameDuck(t, done)
	require.True(t, e.b.Closed())
}

// TestLameDuckMQTT311Closed: 3.1.1 has no server DISCONNECT: a 3.1.1
// client (paho.mqtt.golang) loses its connection, and a raw 3.1.1
// connection reads end of stream with no byte after its CONNACK.
func TestLameDuckMQTT311Closed(t *testing.T) {
	e := start(t, lameDuckOpts, mqtt.Options{})
	lost := make(chan error, 1)
	c := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + e.mqtt.Addr().String()).
		SetClientID("ld311").SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) { lost <- err }))
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	raw, err := net.Dial("tcp", e.mqtt.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write(packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, ClientID: []byte("raw311"), KeepAlive: 30, CleanStart: true}))
	require.NoError(t, err)
	ack := make([]byte, 4)
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(raw, ack)
	require.NoError(t, err)
	require.Equal(t, []byte{0x20, 2, 0, 0}, ack)

	done := lameDuck(t, e.b)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the 3.1.1 client was not closed")
	}
	rest, err := io.ReadAll(raw)
	require.NoError(t, err) // EOF: a clean close
	require.Empty(t, rest, "a 3.1.1 client got bytes at close")
	waitLameDuck(t, done)
}
