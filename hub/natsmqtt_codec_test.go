package hub

import (
	"bytes"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/store"
)

func TestRmsgRoundTrip(t *testing.T) {
	for _, m := range []*store.Message{
		{QoS: 0, Payload: []byte("on")},
		{QoS: 1, Payload: []byte("x"), Props: []byte{3, 1, 1, 0}, Expires: 1_900_000_000_000_000_000},
		{QoS: 2, Payload: []byte{0, 0xff, '\r', '\n'}},
	} {
		rec := encodeRmsg("a.b//c", m, "busbar-N1")
		if rec.Subject != "$MQTT.rmsgs.a.b//c" || rec.Header.Get(hdrRTopic) != "a/b.c" {
			t.Fatalf("record on %q, topic %q", rec.Subject, rec.Header.Get(hdrRTopic))
		}
		subj, got, origin, err := decodeRmsg(rec.Subject, rec.Header, rec.Data)
		if err != nil || subj != "a.b//c" || origin != "busbar-N1" || got == nil || got.QoS != m.QoS ||
			!bytes.Equal(got.Payload, m.Payload) || !bytes.Equal(got.Props, m.Props) || got.Expires != m.Expires || !got.Retain {
			t.Fatalf("%+v came back as %q %+v %q %v", m, subj, got, origin, err)
		}
	}
	rec := encodeRmsg("gone", nil, "o")
	if rec.Header.Get(hdrRFlags) != "-1" || len(rec.Data) != 0 {
		t.Fatalf("clear marker: flags %q, %d bytes", rec.Header.Get(hdrRFlags), len(rec.Data))
	}
	if subj, m, _, err := decodeRmsg(rec.Subject, rec.Header, rec.Data); err != nil || subj != "gone" || m != nil {
		t.Fatalf("clear marker read as %q %+v %v", subj, m, err)
	}
}

// The forms nats-server writes, built from its documented layout.
func TestRmsgNATSServerForms(t *testing.T) {
	h := nats.Header{}
	h.Set(hdrRTopic, "door/1")
	h.Set(hdrRFlags, "3") // retain, QoS 1
	h.Set(hdrROrigin, "Zx9Kq1Lm")
	h.Set(hdrRSource, "alice")
	subj, m, origin, err := decodeRmsg("$MQTT.rmsgs.door.1", h, []byte("open"))
	if err != nil || subj != "door.1" || origin != "Zx9Kq1Lm" || m == nil || m.QoS != 1 || string(m.Payload) != "open" {
		t.Fatalf("header form: %q %+v %q %v", subj, m, origin, err)
	}
	h.Set(hdrRFlags, "-5")
	if _, m, _, err := decodeRmsg("$MQTT.rmsgs.door.1", h, nil); err != nil || m != nil {
		t.Fatalf("clear marker: %+v %v", m, err)
	}
	// Before 2.10.10: a JSON record, payload in base64.
	legacy := []byte(`{"origin":"old","subject":"door.2","topic":"door/2","msg":"Y2xvc2Vk","flags":5,"source":"bob"}`)
	subj, m, origin, err = decodeRmsg("$MQTT.rmsgs.door.2", nats.Header{}, legacy)
	if err != nil || subj != "door.2" || origin != "old" || m == nil || m.QoS != 2 || string(m.Payload) != "closed" {
		t.Fatalf("JSON form: %q %+v %q %v", subj, m, origin, err)
	}
	for _, bad := range []string{"7", "10", "zz"} { // QoS 3, past the nibble, not hex
		h.Set(hdrRFlags, bad)
		if _, _, _, err := decodeRmsg("$MQTT.rmsgs.x", h, []byte("p")); err == nil {
			t.Errorf("flags %q accepted", bad)
		}
	}
	if _, _, _, err := decodeRmsg("$MQTT.sess.x", h, nil); err == nil {
		t.Error("a record outside $MQTT.rmsgs. accepted")
	}
}
