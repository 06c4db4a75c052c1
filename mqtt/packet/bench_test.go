package packet

import "testing"

var (
	benchPublish = AppendPublish(nil, V5, &PublishPacket{QoS: 1, Topic: b("sensors/room1/temp"), PacketID: 42,
		Payload: make([]byte, 64), Props: mk(func(p *Properties) { p.SetMessageExpiry(60) })})
	benchConnect = AppendConnect(nil, &ConnectPacket{Version: V5, CleanStart: true, KeepAlive: 30, ClientID: b("client-0001"),
		UsernameFlag: true, Username: b("user"), PasswordFlag: true, Password: b("secret"),
		Props: mk(func(p *Properties) {
			p.SetSessionExpiryInterval(3600)
			p.SetReceiveMaximum(100)
			p.User = []UserProperty{{b("k"), b("v")}}
		})})
	benchSubscribe = AppendSubscribe(nil, V5, &SubscribePacket{PacketID: 7, Subs: []Subscription{
		{Filter: b("a/+/c"), QoS: 1}, {Filter: b("d/#"), QoS: 2, NoLocal: true}, {Filter: b("e"), RetainHandling: 2}}})
)

func BenchmarkDecodePublish(b *testing.B) {
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(benchPublish)))
	for b.Loop() {
		if _, err := d.DecodePublish(benchPublish, V5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	p := &PublishPacket{QoS: 1, Topic: []byte("sensors/room1/temp"), PacketID: 42, Payload: make([]byte, 64)}
	p.Props.SetMessageExpiry(60)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublish(buf[:0], V5, p)
	}
}

func BenchmarkAppendPublishHeader(b *testing.B) {
	p := &PublishPacket{QoS: 1, Topic: []byte("sensors/room1/temp"), PacketID: 42, Payload: make([]byte, 64)}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublishHeader(buf[:0], V311, p)
	}
}

func BenchmarkDecodeConnect(b *testing.B) {
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.DecodeConnect(benchConnect); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSubscribe(b *testing.B) {
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.DecodeSubscribe(benchSubscribe, V5); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFrame(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := Frame(benchPublish, 0); n != len(benchPublish) {
			b.Fatal(n)
		}
	}
}
