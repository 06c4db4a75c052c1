package packet

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode frames and decodes arbitrary bytes: it must never panic, every
// error must wrap a Code, and a decoded packet must re-encode to bytes that
// decode to the same packet. Seeds: the fixture table.
func FuzzDecode(f *testing.F) {
	for _, fx := range fixtures {
		f.Add(fx.raw, byte(fx.v))
	}
	f.Fuzz(func(t *testing.T, data []byte, vb byte) {
		v := V311
		if vb == byte(V5) {
			v = V5
		}
		n, err := Frame(data, 1<<16)
		if err != nil {
			var c Code
			if !errors.As(err, &c) {
				t.Fatalf("Frame error without a Code: %v", err)
			}
			return
		}
		if n == 0 {
			return
		}
		var d Decoder
		p, err := d.Decode(data[:n], v)
		if err != nil {
			var c Code
			if !errors.As(err, &c) {
				t.Fatalf("Decode error without a Code: %v", err)
			}
			return
		}
		enc := Append(nil, v, p)
		var d2 Decoder
		p2, err := d2.Decode(enc, v)
		if err != nil {
			t.Fatalf("re-encoded %x (from %x) does not decode: %v", enc, data[:n], err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip differs:\n in %x\nout %x\n%+v\n%+v", data[:n], enc, decoded(p), decoded(p2))
		}
	})
}

// FuzzMessageProps decodes arbitrary bytes as stored message properties
// (what a Store keeps of a PUBLISH's or a will's properties): it must
// never panic, every error must wrap a Code, and what decodes must encode
// back to bytes that decode to the same properties.
func FuzzMessageProps(f *testing.F) {
	var p Properties
	p.SetPayloadFormat(1)
	p.SetMessageExpiry(30)
	p.SetContentType([]byte("text/plain"))
	p.SetResponseTopic([]byte("r/t"))
	p.SetCorrelationData([]byte{1, 2, 3})
	p.User = []UserProperty{{[]byte("k"), []byte("v")}}
	f.Add(AppendMessageProps(nil, &p))
	f.Add([]byte{0})
	f.Add([]byte{5, 0x18, 0, 0, 0, 60}) // a will delay
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeMessageProps(data)
		if err != nil {
			var c Code
			if !errors.As(err, &c) {
				t.Fatalf("error without a Code: %v", err)
			}
			return
		}
		enc := AppendMessageProps(nil, p)
		p2, err := DecodeMessageProps(enc)
		if err != nil {
			t.Fatalf("re-encoded %x (from %x) does not decode: %v", enc, data, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip differs:\n in %x\nout %x\n%+v\n%+v", data, enc, p, p2)
		}
	})
}
