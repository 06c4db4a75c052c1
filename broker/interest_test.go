package broker

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fwdClient is a Forwarder recording what the router hands it.
type fwdClient struct {
	mu  sync.Mutex
	got []string
}

func (f *fwdClient) Deliver(*Subscription, *Message) bool { return true }
func (f *fwdClient) Wake()                                {}
func (f *fwdClient) Close(error)                          {}
func (f *fwdClient) Forward(m *Message, plain bool, queues [][]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	var qs []string
	for _, q := range queues {
		qs = append(qs, string(q))
	}
	f.got = append(f.got, fmt.Sprintf("%s plain=%v q=%s", m.Subject, plain, strings.Join(qs, ",")))
	return true
}

func (f *fwdClient) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.got
	f.got = nil
	return g
}

func TestInterestWatch(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := b.Local("l")
	pre, _ := l.Subscribe("pre.x", func(*Message) {})
	var events []string
	w := b.WatchInterest("", func(s, q []byte, n int) { events = append(events, fmt.Sprintf("%s|%s|%d", s, q, n)) })
	defer w.Stop()
	s1, _ := l.Subscribe("a.>", func(*Message) {})
	s2, _ := l.Subscribe("a.>", func(*Message) {}) // same interest: no event
	q1, _ := l.QueueSubscribe("work", "g", func(*Message) {})
	q2, _ := l.QueueSubscribe("work", "g", func(*Message) {}) // weight 2
	// A Forwarder's subscriptions are remote interest: never reported.
	fs, _ := b.Connect(&fwdClient{}, nil, ConnectOptions{Detached: true})
	_ = fs.Subscribe(&Subscription{Subject: []byte("remote.x"), Client: fs.Client()})
	l.Unsubscribe(s1)
	l.Unsubscribe(s2) // last one: gone
	l.Unsubscribe(q1)
	l.Unsubscribe(q2)
	want := "a.>||1 work|g|1 work|g|2 a.>||0 work|g|1 work|g|0"
	if got := strings.Join(events, " "); got != want {
		t.Fatalf("events\n got %s\nwant %s", got, want)
	}
	var all []string
	w.Each(func(s, q []byte, n int) { all = append(all, fmt.Sprintf("%s|%s|%d", s, q, n)) })
	if strings.Join(all, " ") != "pre.x||1" {
		t.Fatalf("Each: %v", all)
	}
	l.Unsubscribe(pre)
}

func TestForwarderOncePerPublishLocalFirst(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fwdClient{}
	fs, _ := b.Connect(f, nil, ConnectOptions{Detached: true})
	for _, s := range []*Subscription{
		{Subject: []byte("x.>"), Client: f}, {Subject: []byte("x.y"), Client: f},
		{Subject: []byte("x.y"), Queue: []byte("g"), Client: f}, {Subject: []byte("x.*"), Queue: []byte("h"), Client: f},
	} {
		if err := fs.Subscribe(s); err != nil {
			t.Fatal(err)
		}
	}
	pub, _ := b.Local("pub")
	pub.Publish("x.y", []byte("1"))
	// Two plain matches and two groups with no local member: one Forward.
	if got := f.take(); len(got) != 1 || got[0] != "x.y plain=true q=g,h" && got[0] != "x.y plain=true q=h,g" {
		t.Fatalf("forwarded %v", got)
	}
	// A local member of g: g stays local, h still goes to the remote.
	sub, _ := pub.QueueSubscribe("x.y", "g", func(*Message) {})
	pub.Flush(t.Context())
	for range 20 {
		pub.Publish("x.y", []byte("2"))
	}
	got := f.take()
	if len(got) != 20 || got[0] != "x.y plain=true q=h" {
		t.Fatalf("forwarded %v", got)
	}
	pub.Unsubscribe(sub)
	// A message from the remote never goes back to a Forwarder, and
	// reaches only the queue groups it names.
	var plain, inG atomic.Int32
	pub.Subscribe("x.y", func(*Message) { plain.Add(1) })
	pub.QueueSubscribe("x.y", "g2", func(*Message) { inG.Add(1) })
	var batch Batch
	fs.PublishRemote(&batch, &Message{Subject: []byte("x.y"), Payload: []byte("r")}, nil)
	fs.PublishRemote(&batch, &Message{Subject: []byte("x.y"), Payload: []byte("r")}, [][]byte{[]byte("g2")})
	batch.Flush()
	if got := f.take(); len(got) != 0 {
		t.Fatalf("sent back to the remote: %v", got)
	}
	// The handlers run on the dispatcher: wait for them.
	for i := 0; plain.Load()+inG.Load() < 3 && i < 1000; i++ {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if plain.Load() != 2 || inG.Load() != 1 {
		t.Fatalf("from the remote: plain subscriber got %d (want 2), queue g2 got %d (want 1: only when named)", plain.Load(), inG.Load())
	}
}
