package busbartest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/busbartest"
)

// A test that needs a broker starts one in one line.
func TestStartAndSetUsers(t *testing.T) {
	s := busbartest.Start(t, busbartest.Options{Users: []auth.User{{Name: "app", Password: "pw"}}})
	nc := s.Conn(t, nats.UserInfo("app", "pw"))
	sub, err := nc.SubscribeSync("orders.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil { // the subscription is in the broker before the publish
		t.Fatal(err)
	}
	tcp, err := nats.Connect(s.NATSURL, nats.UserInfo("app", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	if err := tcp.Publish("orders.new", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "1" {
		t.Fatalf("got %v, %v", m, err)
	}
	// Permissions changed while running: the client is told.
	errs := make(chan error, 2)
	tcp.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	if err := s.SetUsers(auth.User{Name: "app", Password: "pw", Perms: &auth.Permissions{Publish: &auth.SubjectPermission{Allow: []string{"status.>"}}}}); err != nil {
		t.Fatal(err)
	}
	_ = tcp.Publish("orders.new", []byte("2"))
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the new permissions were not applied")
	}
}

// cleanups stands in for a test's *testing.T outside a test.
type cleanups struct{ fns []func() }

func (c *cleanups) Helper()                   {}
func (c *cleanups) Cleanup(f func())          { c.fns = append(c.fns, f) }
func (c *cleanups) Errorf(f string, a ...any) { fmt.Printf(f+"\n", a...) }
func (c *cleanups) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (c *cleanups) run() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
}

func ExampleStart() {
	t := &cleanups{} // in a test: the test's *testing.T
	defer t.run()
	s := busbartest.Start(t, busbartest.Options{NoListeners: true})
	nc := s.Conn(t)
	sub, _ := nc.SubscribeSync("greet")
	_ = nc.Publish("greet", []byte("hello"))
	m, _ := sub.NextMsg(time.Second)
	fmt.Println(string(m.Data))
	// Output: hello
}
