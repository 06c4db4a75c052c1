package mqtt_test

import (
	"bufio"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/mqtt/packet"
)

// BenchmarkMQTTQoS0 is a raw MQTT 3.1.1 publisher → busbar over TCP → one
// raw subscriber, 64-byte payloads. bench/ compares with Mosquitto and
// mochi-mqtt.
func BenchmarkMQTTQoS0(b *testing.B) {
	e := start(b, broker.Options{}, mqtt.Options{})
	dial := func(id string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", e.mqtt.Addr().String())
		require.NoError(b, err)
		b.Cleanup(func() { c.Close() })
		_, err = c.Write(packet.AppendConnect(nil, &packet.ConnectPacket{Version: packet.V311, CleanStart: true, ClientID: []byte(id)}))
		require.NoError(b, err)
		br := bufio.NewReaderSize(c, 64<<10)
		ack := make([]byte, 4)
		_, err = io.ReadFull(br, ack)
		require.NoError(b, err)
		return c, br
	}
	sub, sbr := dial("sub")
	_, err := sub.Write(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("bench/x")}}}))
	require.NoError(b, err)
	suback := make([]byte, 5)
	_, err = io.ReadFull(sbr, suback)
	require.NoError(b, err)
	pub, _ := dial("pub")
	msg := packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{Topic: []byte("bench/x"), Payload: make([]byte, 64)})
	batch := make([]byte, 0, len(msg)*256)
	for range 256 {
		batch = append(batch, msg...)
	}
	done := make(chan error, 1)
	go func() {
		// Each delivered PUBLISH is as long as the one sent.
		_, err := io.CopyN(io.Discard, sbr, int64(len(msg))*int64(b.N))
		done <- err
	}()
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += 256 {
		n := min(256, b.N-sent)
		if _, err := pub.Write(batch[:n*len(msg)]); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, <-done)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
