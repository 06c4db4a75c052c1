package config_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"
)

// TestMQTTLimitsFromConfig: the mqtt {} bounds of issue 16 take effect
// from a file: max_connections (a second client gets CONNACK 0x97, a
// 3.1.1 one 0x03), max_topic_alias and max_payload (the 5.0 CONNACK's
// Topic Alias Maximum and Maximum Packet Size).
func TestMQTTLimitsFromConfig(t *testing.T) {
	_, addrs := serveConf(t, `listen: "127.0.0.1:-1"
max_payload: 100KB
mqtt { listen: "127.0.0.1:-1", max_connections: 1, max_topic_alias: 4, max_queued_bytes: 1MB, max_offline_bytes: 8MB }
`)
	m := addrs["mqtt"]
	nc, err := net.Dial("tcp", m)
	require.NoError(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "first", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)
	defer c.Disconnect(&paho.Disconnect{})
	require.NotNil(t, ack.Properties.TopicAliasMaximum)
	require.Equal(t, uint16(4), *ack.Properties.TopicAliasMaximum)
	require.NotNil(t, ack.Properties.MaximumPacketSize)
	require.Equal(t, uint32(100<<10+64<<10), *ack.Properties.MaximumPacketSize, "max_payload + 64 KiB")

	require.Equal(t, byte(0x97), connack5(t, m, nil, ""), "5.0: over max_connections")
	require.Equal(t, byte(0x03), connack311(t, m, nil, nil), "3.1.1: over max_connections")
}
