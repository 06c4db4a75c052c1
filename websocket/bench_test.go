package websocket_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/websocket"
)

// wsClient upgrades a raw connection and speaks NATS in masked frames.
func wsClient(b *testing.B, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	require.NoError(b, err)
	b.Cleanup(func() { c.Close() })
	_, err = io.WriteString(c, upgradeRequest("/"))
	require.NoError(b, err)
	br := bufio.NewReaderSize(c, 64<<10)
	for { // the 101 head
		line, err := br.ReadString('\n')
		require.NoError(b, err)
		if line == "\r\n" {
			break
		}
	}
	readFrame(b, br) // INFO
	return c, br
}

// BenchmarkNATSOverWebSocket: a raw NATS publisher over WebSocket →
// busbar → a raw NATS subscriber over WebSocket, 16-byte payloads (each
// client read batch becomes one frame). bench/ compares with nats-server.
func BenchmarkNATSOverWebSocket(b *testing.B) {
	e := start(b, broker.Options{}, websocket.Options{})
	sub, sbr := wsClient(b, e.ws.Addr().String())
	_, err := sub.Write(frame(0x2, true, []byte("CONNECT {\"verbose\":false}\r\nSUB bench.x 1\r\nPING\r\n")))
	require.NoError(b, err)
	for {
		_, p := readFrame(b, sbr)
		if strings.Contains(string(p), "PONG") {
			break
		}
	}
	pub, _ := wsClient(b, e.ws.Addr().String())
	_, err = pub.Write(frame(0x2, true, []byte("CONNECT {\"verbose\":false}\r\n")))
	require.NoError(b, err)
	const per = 256
	msg := "PUB bench.x 16\r\n0123456789abcdef\r\n"
	batch := frame(0x2, true, []byte(strings.Repeat(msg, per)))
	delivered := int64(len("MSG bench.x 1 16\r\n0123456789abcdef\r\n"))
	done := make(chan error, 1)
	go func() {
		var got int64
		want := delivered * int64(b.N)
		for got < want {
			h := make([]byte, 2)
			if _, err := io.ReadFull(sbr, h); err != nil {
				done <- err
				return
			}
			n := int64(h[1] & 0x7F)
			switch n {
			case 126:
				var ext [2]byte
				_, _ = io.ReadFull(sbr, ext[:])
				n = int64(ext[0])<<8 | int64(ext[1])
			case 127:
				var ext [8]byte
				_, _ = io.ReadFull(sbr, ext[:])
				n = 0
				for _, x := range ext {
					n = n<<8 | int64(x)
				}
			}
			if _, err := io.CopyN(io.Discard, sbr, n); err != nil {
				done <- err
				return
			}
			got += n
		}
		done <- nil
	}()
	b.SetBytes(16)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += per {
		p := batch
		if n := b.N - sent; n < per {
			p = frame(0x2, true, bytes.Repeat([]byte(msg), n))
		}
		if _, err := pub.Write(p); err != nil {
			b.Fatal(err)
		}
	}
	require.NoError(b, <-done)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
