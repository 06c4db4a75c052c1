package packet_test

import (
	"errors"
	"fmt"

	"github.com/busbar/busbar/mqtt/packet"
)

// A read loop: Frame finds whole packets in the read buffer, the Decoder
// decodes them in place, and replies are appended to an output buffer.
func Example() {
	// What a 3.1.1 client sent: CONNECT, then a QoS 1 PUBLISH.
	var in []byte
	in = packet.AppendConnect(in, &packet.ConnectPacket{Version: packet.V311, CleanStart: true, KeepAlive: 30, ClientID: []byte("c1")})
	in = packet.AppendPublish(in, packet.V311, &packet.PublishPacket{QoS: 1, Topic: []byte("a/b"), PacketID: 1, Payload: []byte("hi")})

	var (
		d   packet.Decoder
		v   packet.Version
		out []byte
	)
	for len(in) > 0 {
		n, err := packet.Frame(in, 0)
		if err != nil || n == 0 {
			break // close the connection (err), or read more (n == 0)
		}
		raw := in[:n]
		in = in[n:]
		switch packet.Type(raw[0] >> 4) {
		case packet.Connect:
			cp, err := d.DecodeConnect(raw)
			if errors.Is(err, packet.UnsupportedProtocolVersion) {
				out = packet.AppendConnack(out, packet.V311, &packet.ConnackPacket{Code: packet.UnsupportedProtocolVersion})
				break
			}
			v = cp.Version
			fmt.Printf("CONNECT %s from %s\n", v, cp.ClientID)
			out = packet.AppendConnack(out, v, &packet.ConnackPacket{})
		case packet.Publish:
			p, err := d.DecodePublish(raw, v)
			if err != nil {
				fmt.Println(err)
				return
			}
			// p.Topic and p.Payload alias the read buffer: copy what escapes.
			fmt.Printf("PUBLISH %s %q\n", p.Topic, p.Payload)
			out = packet.AppendAck(out, v, &packet.AckPacket{Type: packet.Puback, PacketID: p.PacketID})
		}
	}
	fmt.Printf("reply % x\n", out)
	// Output:
	// CONNECT 3.1.1 from c1
	// PUBLISH a/b "hi"
	// reply 20 02 00 00 40 02 00 01
}
