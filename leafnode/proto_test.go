package leafnode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/transport"
)

// Byte-level forms, as nats-server writes and reads them.
func TestGoldenForms(t *testing.T) {
	q := func(s ...string) [][]byte {
		var out [][]byte
		for _, x := range s {
			out = append(out, []byte(x))
		}
		return out
	}
	cases := []struct {
		got, want string
	}{
		{string(appendSub(nil, []byte("foo.>"), nil, 1)), "LS+ foo.>\r\n"},
		{string(appendSub(nil, []byte("foo"), []byte("workers"), 3)), "LS+ foo workers 3\r\n"},
		{string(appendUnsub(nil, []byte("foo.>"), nil)), "LS- foo.>\r\n"},
		{string(appendUnsub(nil, []byte("foo"), []byte("workers"))), "LS- foo workers\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), nil, nil, -1, 5)), "LMSG foo 5\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), []byte("_INBOX.1"), nil, -1, 5)), "LMSG foo _INBOX.1 5\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), []byte("_INBOX.1"), q("q1", "q2"), -1, 5)), "LMSG foo + _INBOX.1 q1 q2 5\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), nil, q("q1"), -1, 5)), "LMSG foo | q1 5\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), nil, nil, 12, 17)), "HMSG foo 12 17\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), []byte("r"), q("q1"), 12, 17)), "HMSG foo + r q1 12 17\r\n"},
		{string(appendMsgLine(nil, []byte("foo"), nil, q("q1"), 12, 17)), "HMSG foo | q1 12 17\r\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	ci := connectInfo{Version: "0.1.0", ID: "NID", Name: "leaf-1", Headers: true, User: "u", Pass: "p",
		DenyPub: []string{"secret.>"}, RemoteAccount: "$G", Proto: protoVersion}
	got := string(appendConnect(nil, &ci))
	// encoding/json escapes '>' as nats-server's CONNECT (also json.Marshal) does.
	want := `CONNECT {"version":"0.1.0","user":"u","pass":"p","server_id":"NID","name":"leaf-1","headers":true,"deny_pub":["secret.\u003e"],"remote_account":"$G","protocol":1}` + "\r\n"
	if got != want {
		t.Errorf("CONNECT\n got %s\nwant %s", got, want)
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(got), "CONNECT ")), &m)
	for _, k := range []string{"cluster", "compress_mode", "is_hub"} {
		if _, ok := m[k]; ok {
			t.Errorf("CONNECT carries %q", k)
		}
	}
}

// recorder is a parser handler that prints what it gets.
type recorder struct{ out strings.Builder }

func (r *recorder) onInfo(arg []byte) error { fmt.Fprintf(&r.out, "INFO %s;", arg); return nil }
func (r *recorder) onPing() error           { r.out.WriteString("PING;"); return nil }
func (r *recorder) onPong() error           { r.out.WriteString("PONG;"); return nil }
func (r *recorder) onErr(arg []byte) error  { fmt.Fprintf(&r.out, "ERR %s;", arg); return nil }
func (r *recorder) onSub(s, q []byte, w int) error {
	fmt.Fprintf(&r.out, "SUB %s %s %d;", s, q, w)
	return nil
}
func (r *recorder) onUnsub(s, q []byte) error { fmt.Fprintf(&r.out, "UNSUB %s %s;", s, q); return nil }
func (r *recorder) onMsg(s, reply []byte, qs [][]byte, hl int, msg []byte) error {
	fmt.Fprintf(&r.out, "MSG %s r=%s q=%s h=%d %q;", s, reply, bytes.Join(qs, []byte(",")), hl, msg)
	return nil
}

func TestParserForms(t *testing.T) {
	in := "INFO {\"a\":1}\r\nPING\r\nPONG\r\n+OK\r\n-ERR 'Loop detected'\r\n" +
		"LS+ foo\r\nLS+ foo q 3\r\nLS- foo\r\nLS- foo q\r\n" +
		"LMSG foo 2\r\nhi\r\nLMSG foo r 2\r\nhi\r\nLMSG foo + r q1 q2 2\r\nhi\r\nLMSG foo | q1 2\r\nhi\r\n" +
		"HMSG foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nHMSG foo + r q 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
	want := "INFO {\"a\":1};PING;PONG;ERR 'Loop detected';SUB foo  1;SUB foo q 3;UNSUB foo ;UNSUB foo q;" +
		"MSG foo r= q= h=-1 \"hi\";MSG foo r=r q= h=-1 \"hi\";MSG foo r=r q=q1,q2 h=-1 \"hi\";MSG foo r= q=q1 h=-1 \"hi\";" +
		"MSG foo r= q= h=12 \"NATS/1.0\\r\\n\\r\\nhi\";MSG foo r=r q=q h=12 \"NATS/1.0\\r\\n\\r\\nhi\";"
	// Whole, then cut at every position: the same operations.
	for cut := 0; cut <= len(in); cut++ {
		r := &recorder{}
		p := newParser(r, 4096, 1<<20)
		buf := []byte(in)
		a, b := append([]byte(nil), buf[:cut]...), append([]byte(nil), buf[cut:]...)
		if err := p.parse(a); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		clear(a) // the parser must not keep aliases into a reused buffer
		if err := p.parse(b); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if r.out.String() != want {
			t.Fatalf("cut %d:\n got %s\nwant %s", cut, r.out.String(), want)
		}
	}
	for _, bad := range []string{"LMSG foo\r\n", "LMSG foo x y 2\r\n", "HMSG foo 5 2\r\n", "LS+\r\n", "BOGUS\r\n", "LMSG foo 2\r\nhiXX"} {
		if err := newParser(&recorder{}, 4096, 1<<20).parse([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if err := newParser(&recorder{}, 4096, 10).parse([]byte("LMSG foo 11\r\n")); err != errPayload {
		t.Errorf("max payload: %v", err)
	}
}

func FuzzLeafParser(f *testing.F) {
	for _, s := range []string{
		"LMSG foo 2\r\nhi\r\n", "LMSG foo + r q1 q2 2\r\nhi\r\n", "LMSG foo | q1 2\r\nhi\r\n",
		"HMSG foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n", "LS+ foo q 3\r\nLS- foo q\r\n", "INFO {}\r\nPING\r\n",
		"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n",
	} {
		f.Add([]byte(s), 3)
	}
	f.Fuzz(func(t *testing.T, in []byte, cut int) {
		whole := &recorder{}
		errWhole := newParser(whole, 256, 1024).parse(in)
		if cut < 0 || cut > len(in) {
			return
		}
		split := &recorder{}
		p := newParser(split, 256, 1024)
		a := append([]byte(nil), in[:cut]...)
		err := p.parse(a)
		clear(a)
		if err == nil {
			err = p.parse(append([]byte(nil), in[cut:]...))
		}
		if (err == nil) != (errWhole == nil) {
			return // a line too long can fail in one form only; no panic is what matters
		}
		if errWhole == nil && whole.out.String() != split.out.String() {
			t.Fatalf("split at %d differs:\n%s\n%s", cut, whole.out.String(), split.out.String())
		}
	})
}

func TestMQTTHeader(t *testing.T) {
	if q, id, only, ok := mqttHeader(mqttHeaders[2]); !ok || !only || q != 2 || id != nil {
		t.Fatal(q, id, only, ok)
	}
	if q, _, only, ok := mqttHeader([]byte("NATS/1.0\r\nX: y\r\nNmqtt-Pub:1\r\n\r\n")); !ok || only || q != 1 {
		t.Fatal(q, only, ok)
	}
	if _, _, _, ok := mqttHeader([]byte("NATS/1.0\r\nX: y\r\n\r\n")); ok {
		t.Fatal("found a header that is not there")
	}
}

// TestMQTTLogIDHeader: a publish log id travels beside the QoS and comes
// back out; with only those two headers the block can be dropped.
func TestMQTTLogIDHeader(t *testing.T) {
	h := mqttIDHeader(1, "NABC.1z")
	if string(h) != "NATS/1.0\r\nNmqtt-Pub:1\r\nBusbar-Id:NABC.1z\r\n\r\n" {
		t.Fatalf("%q", h)
	}
	if q, id, only, ok := mqttHeader(h); !ok || !only || q != 1 || string(id) != "NABC.1z" {
		t.Fatal(q, string(id), only, ok)
	}
	if q, id, only, ok := mqttHeader([]byte("NATS/1.0\r\nNmqtt-Pub:2\r\nX: y\r\nBusbar-Id: i\r\n\r\n")); !ok || only || q != 2 || string(id) != "i" {
		t.Fatal(q, string(id), only, ok)
	}
	if _, id, _, ok := mqttHeader([]byte("NATS/1.0\r\nBusbar-Id: i\r\n\r\n")); ok || string(id) != "i" {
		t.Fatal("an id without Nmqtt-Pub is not an MQTT publish", ok)
	}
}

// BenchmarkForward is the cost of sending one 128-byte message to the hub
// through the router: a local publish matching the link's interest.
func BenchmarkForward(b *testing.B) {
	br, err := broker.New(broker.Options{})
	if err != nil {
		b.Fatal(err)
	}
	l := &link{r: Remote{}, svc: &Service{}}
	c := &conn{l: l, b: br, out: transport.NewOutbound(0), hdrs: true}
	c.sess, err = br.Connect(c, nil, broker.ConnectOptions{Transport: "leafnode", Detached: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.sess.Subscribe(&broker.Subscription{Subject: []byte("bench.>"), Client: c}); err != nil {
		b.Fatal(err)
	}
	if err := c.sess.Subscribe(&broker.Subscription{Subject: []byte("bench.x"), Queue: []byte("q"), Client: c}); err != nil {
		b.Fatal(err)
	}
	pub, err := br.Local("pub")
	if err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 128)
	drain := func() { // stands in for the writer: drop what was queued
		c.out.Close(false)
		c.out = transport.NewOutbound(0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pub.Publish("bench.x", payload); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 1023 {
			b.StopTimer()
			drain()
			b.StartTimer()
		}
	}
}
