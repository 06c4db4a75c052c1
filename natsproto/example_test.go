package natsproto_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// The NATS listener on a broker, and nats.go clients over TCP and in
// process (no socket) exchanging a request and its reply.
func Example() {
	b, err := broker.New(broker.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())

	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1"}) // Port 0: a free port
	if err != nil {
		panic(err)
	}
	if err := nt.Listen(); err != nil { // bind now: address errors surface here
		panic(err)
	}
	if err := b.Start(nt); err != nil {
		panic(err)
	}

	svc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)))
	if err != nil {
		panic(err)
	}
	defer svc.Close()
	_, _ = svc.Subscribe("time.zone.*", func(m *nats.Msg) { _ = m.Respond([]byte("UTC+1")) })
	_ = svc.Flush()

	nc, err := nats.Connect("nats://" + nt.Addr().String())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	m, err := nc.Request("time.zone.paris", nil, time.Second)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(m.Data))
	fmt.Println(nc.ConnectedServerName() == b.ID(), nc.MaxPayload())
	// Output:
	// UTC+1
	// true 1048576
}
