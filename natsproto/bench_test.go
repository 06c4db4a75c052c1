package natsproto_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
)

// BenchmarkTCPPubSub is nats.go publish → busbar over TCP → one nats.go
// subscriber, 16-byte payloads. It measures the whole path on loopback;
// bench/ compares the same load with nats-server.
func BenchmarkTCPPubSub(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(map[int]string{16: "16B", 1024: "1KiB"}[size], func(b *testing.B) {
			s := startServer(b, broker.Options{})
			sub := dialers["tcp"](b, s)
			pub := dialers["tcp"](b, s)
			var got atomic.Int64
			done := make(chan struct{})
			n := int64(b.N)
			ns, err := sub.Subscribe("bench", func(*nats.Msg) {
				if got.Add(1) == n {
					close(done)
				}
			})
			require.NoError(b, err)
			require.NoError(b, ns.SetPendingLimits(-1, -1))
			require.NoError(b, sub.Flush())
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := pub.Publish("bench", payload); err != nil {
					b.Fatal(err)
				}
				if i%4096 == 4095 {
					_ = pub.Flush() // bound the client's buffer
				}
			}
			require.NoError(b, pub.Flush())
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				b.Fatalf("received %d of %d", got.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
