package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// TestMQTT_3_2_2_3_2_SessionExpiryLowered: when session_expiry lowers the
// Session Expiry Interval a 5.0 client asked for, CONNACK carries the one
// in force (5.0 §3.2.2.3.2: the client otherwise believes its own); when
// it does not, CONNACK leaves the property out. The CONNACKs are checked
// byte for byte (topic aliases off and a 4 KiB Maximum Packet Size, so
// the other properties are fixed).
func TestMQTT_3_2_2_3_2_SessionExpiryLowered(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{SessionExpiry: time.Minute, MaxTopicAlias: -1, MaxPacketSize: 4096})
	rest := []byte{0x21, 0x04, 0x00, 0x27, 0, 0, 0x10, 0} // Receive Maximum 1024, Maximum Packet Size 4096
	lowered := frame(0x20, append([]byte{0, 0}, withProps(append([]byte{0x11, 0, 0, 0, 60}, rest...))...)...)
	kept := frame(0x20, append([]byte{0, 0}, withProps(rest)...)...)
	cases := []struct {
		name string
		sei  uint32 // 0: absent
		want []byte
	}{
		{"longer", 3600, lowered},
		{"never expires", 0xFFFFFFFF, lowered},
		{"shorter", 30, kept},
		{"equal", 60, kept},
		{"absent", 0, kept},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("x-" + tc.name), CleanStart: true, KeepAlive: 60}
			if tc.sei != 0 {
				cp.Props.SetSessionExpiryInterval(tc.sei)
			}
			r := dialRaw(t, e)
			r.send(packet.AppendConnect(nil, cp)...)
			r.expectPacket(tc.want, "CONNACK")
		})
	}
	t.Run("no bound", func(t *testing.T) {
		e := start(t, broker.Options{}, mqtt.Options{MaxTopicAlias: -1, MaxPacketSize: 4096})
		cp := &packet.ConnectPacket{Version: packet.V5, ClientID: []byte("nb"), CleanStart: true, KeepAlive: 60}
		cp.Props.SetSessionExpiryInterval(0xFFFFFFFF)
		r := dialRaw(t, e)
		r.send(packet.AppendConnect(nil, cp)...)
		r.expectPacket(kept, "CONNACK")
	})
	t.Run("paho.golang", func(t *testing.T) {
		sei := uint32(86400)
		_, ack := dial5(t, e, &paho.Connect{ClientID: "px", CleanStart: true, KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
		require.NotNil(t, ack.Properties.SessionExpiryInterval)
		require.Equal(t, uint32(60), *ack.Properties.SessionExpiryInterval)
	})
}

// TestMQTT_3_2_2_3_2_SessionExpiryBoundAtDisconnect: a longer Session
// Expiry Interval in DISCONNECT is held to session_expiry too: the session
// of a client that asked for a day at DISCONNECT, with a 1 s bound, ends.
func TestMQTT_3_2_2_3_2_SessionExpiryBoundAtDisconnect(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{SessionExpiry: time.Second})
	sei := uint32(10)
	cl, ack := dial5(t, e, &paho.Connect{ClientID: "bd", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	require.Equal(t, uint32(1), *ack.Properties.SessionExpiryInterval)
	cl.sub(t, "bd/#", 1)
	day := uint32(86400)
	require.NoError(t, cl.c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: &day}}))
	require.Eventually(t, func() bool { return mqtt.SessionStats(e.b).Sessions == 0 }, waitLong, 10*time.Millisecond,
		"the session outlived session_expiry")
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c := paho.NewClient(paho.ClientConfig{Conn: dialTCP(t, e)})
	back, err := c.Connect(ctx, &paho.Connect{ClientID: "bd", KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
	require.NoError(t, err)
	require.False(t, back.SessionPresent)
	_ = c.Disconnect(&paho.Disconnect{})
}
