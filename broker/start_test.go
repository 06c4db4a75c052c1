package broker_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/natsproto"
)

// A transport handed to Start without Listen is bound by Start: a client
// connects (issue 18: it used to return nil and serve nothing).
func TestStartBindsUnboundTransport(t *testing.T) {
	b := newBroker(t, broker.Options{})
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(nt); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if nt.Addr() == nil {
		t.Fatal("Start did not bind the transport")
	}
	nc, err := nats.Connect("nats://"+nt.Addr().String(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("nats.go: %v", err)
	}
	nc.Close()
}

// A transport that cannot bind makes Start fail naming it, and what
// Start bound in the same call is closed again.
func TestStartReportsBindError(t *testing.T) {
	b := newBroker(t, broker.Options{})
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	mt, err := mqtt.New(mqtt.Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	port := taken.Addr().(*net.TCPAddr).Port
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	err = b.Start(mt, nt)
	if err == nil {
		t.Fatal("Start returned nil with the NATS port taken")
	}
	if !strings.Contains(err.Error(), "start nats") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q does not name the transport and the cause", err)
	}
	if mt.Addr() == nil {
		t.Fatal("the MQTT transport was never bound")
	}
	if c, err := net.DialTimeout("tcp", mt.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Fatal("the MQTT listener Start bound is still open after the failed Start")
	}
}
