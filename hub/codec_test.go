package hub

import (
	"bytes"
	"testing"

	"github.com/busbar/busbar/store"
)

func TestRetainedValueRoundTrip(t *testing.T) {
	for _, m := range []*store.Message{
		{QoS: 1, Payload: []byte("on")},
		{QoS: 2, Payload: []byte("x"), Props: []byte{3, 1, 1, 0}, Expires: 1_900_000_000_000_000_000},
		{QoS: 0, Payload: []byte("p"), Expires: -5},
	} {
		got := decodeRetained(encodeRetained(m))
		if got == nil || got.QoS != m.QoS || !bytes.Equal(got.Payload, m.Payload) || !bytes.Equal(got.Props, m.Props) || got.Expires != m.Expires {
			t.Fatalf("%+v came back as %+v", m, got)
		}
	}
	if decodeRetained([]byte{retainedExt | 1, 200}) != nil {
		t.Fatal("a truncated value decoded")
	}
}
