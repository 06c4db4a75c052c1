package mqttwire

import (
	"net"
	"testing"
)

// TestReaderSplitsPackets: packets written in pieces that cut a length
// and a body come out whole, in order, with their stamps.
func TestReaderSplitsPackets(t *testing.T) {
	var wire []byte
	for i := range 3 {
		wire = AppendPublish(wire, "bench/x", byte(i%2), uint16(i+1), int64(100+i), uint64(i), 200)
	}
	wire = AppendPuback(wire, 7)
	a, b := net.Pipe()
	go func() {
		for i := 0; i < len(wire); i += 7 {
			if _, err := a.Write(wire[i:min(i+7, len(wire))]); err != nil {
				return
			}
		}
		a.Close()
	}()
	r := NewReader(b, 512)
	var got []uint64
	var acked uint16
	for len(got) < 3 || acked == 0 {
		if err := r.Read(); err != nil {
			t.Fatalf("read: %v (publishes %v)", err, got)
		}
		for {
			h, body, ok := r.Next()
			if !ok {
				break
			}
			switch h >> 4 {
			case 3:
				qos, id, payload, ok := ParsePublish(h, body)
				ts, seq, sok := Stamp(payload)
				if !ok || !sok || len(payload) != 200 || int64(seq)+100 != ts || qos != byte(seq%2) || qos == 1 && id != uint16(seq+1) {
					t.Fatalf("publish %d: qos %d id %d ts %d payload %d bytes", seq, qos, id, ts, len(payload))
				}
				got = append(got, seq)
			case 4:
				acked = uint16(body[0])<<8 | uint16(body[1])
			}
		}
	}
	if got[0] != 0 || got[1] != 1 || got[2] != 2 || acked != 7 {
		t.Fatalf("publishes %v, puback %d", got, acked)
	}
}

// TestReaderTooLarge: a packet larger than the buffer is an error, not a
// hang.
func TestReaderTooLarge(t *testing.T) {
	a, b := net.Pipe()
	go func() { _, _ = a.Write(AppendPublish(nil, "t", 0, 0, 0, 0, 100)) }()
	defer a.Close()
	r := NewReader(b, 64)
	for range 3 {
		if err := r.Read(); err == ErrTooLarge {
			return
		} else if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := r.Next(); ok {
			t.Fatal("a packet larger than the buffer came out whole")
		}
	}
	t.Fatal("no ErrTooLarge")
}
