// Command testing is a host application whose test starts busbar with
// busbartest: a price service that answers requests over NATS. main runs
// it against an in-process broker; main_test.go shows the test a host
// app writes.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/natsproto"
)

// Serve answers "price.<item>" requests on nc until it is closed.
func Serve(nc *nats.Conn) (*nats.Subscription, error) {
	prices := map[string]string{"apple": "0.40", "pear": "0.55"}
	return nc.Subscribe("price.*", func(m *nats.Msg) {
		item := m.Subject[len("price."):]
		p, ok := prices[item]
		if !ok {
			p = "unknown"
		}
		_ = m.Respond([]byte(p))
	})
}

func main() {
	b, err := broker.New(broker.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	if _, err := Serve(nc); err != nil {
		log.Fatal(err)
	}
	m, err := nc.Request("price.apple", nil, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("apple costs", string(m.Data))
}
