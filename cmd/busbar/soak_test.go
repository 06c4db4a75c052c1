package main

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/mqtt/packet"
	"github.com/busbar/busbar/store/filestore"
)

// TestDurableSoak runs QoS 1 traffic through busbar with the file store
// (a persistent subscriber acknowledging everything) and samples the
// log's size: acknowledged records are reclaimed, so it stays bounded
// (a saw-tooth under the compaction threshold) however long it runs.
// BUSBAR_SOAK_DURATION sets the length (default 3s; the figure in the
// closing note of the durable-store issue comes from a long run).
func TestDurableSoak(t *testing.T) {
	d := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("BUSBAR_SOAK_DURATION")); err == nil {
		d = v
	}
	dir := t.TempDir()
	natsPort, mqttPort := testpeer.FreePort(t), testpeer.FreePort(t)
	ch := startChild(t, dir, natsPort, mqttPort)
	defer ch.kill()
	addr := testpeer.Addr(mqttPort)
	sub, pub := &rawClient{}, &rawClient{}
	_, err := sub.connect(addr, "soak-sub")
	require.NoError(t, err)
	sub.send(packet.AppendSubscribe(nil, packet.V311, &packet.SubscribePacket{PacketID: 1, Subs: []packet.Subscription{{Filter: []byte("soak/#"), QoS: 1}}}))
	var mu sync.Mutex
	got := 0
	go sub.loop(func(p packet.Packet) {
		if p.Type == packet.Publish {
			mu.Lock()
			got++
			mu.Unlock()
			sub.send(ack(packet.Puback, p.Publish.PacketID))
		}
	})
	time.Sleep(100 * time.Millisecond)
	_, err = pub.connect(addr, "soak-pub")
	require.NoError(t, err)
	credit := make(chan struct{}, 256)
	for range 256 {
		credit <- struct{}{}
	}
	go pub.loop(func(p packet.Packet) {
		if p.Type == packet.Puback {
			credit <- struct{}{}
		}
	})
	payload := make([]byte, 128)
	stop := time.After(d)
	sample := time.NewTicker(max(d/20, 100*time.Millisecond))
	defer sample.Stop()
	var sizes []int64
	sent := 0
	for id := uint16(1); ; id++ {
		if id == 0 {
			id = 1
		}
		select {
		case <-stop:
			st, _ := os.Stat(filepath.Join(dir, filestore.LogName))
			sizes = append(sizes, st.Size())
			mu.Lock()
			t.Logf("soak %v: %d sent, %d delivered; log size samples (bytes): %v", d, sent, got, sizes)
			mu.Unlock()
			var peak int64
			for _, s := range sizes {
				peak = max(peak, s)
			}
			require.Positive(t, sent)
			require.Less(t, peak, int64(5*64<<20), "the log is not reclaimed")
			pub.conn.Close()
			sub.conn.Close()
			return
		case <-sample.C:
			if st, err := os.Stat(filepath.Join(dir, filestore.LogName)); err == nil {
				sizes = append(sizes, st.Size())
			}
		case <-credit:
			pub.send(packet.AppendPublish(nil, packet.V311, &packet.PublishPacket{QoS: 1, Topic: []byte("soak/" + strconv.Itoa(sent%16)), PacketID: id, Payload: payload}))
			sent++
		}
	}
}
