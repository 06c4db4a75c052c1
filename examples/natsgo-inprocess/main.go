// Command natsgo-inprocess connects the real nats.go client to an
// embedded busbar broker through nats.InProcessServer: no port, no socket.
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

func main() {
	b, err := broker.New(broker.Options{ServerName: "embedded"})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(b)))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	fmt.Println("connected to", nc.ConnectedServerName())

	_, err = nc.Subscribe("time.now", func(m *nats.Msg) { _ = m.Respond([]byte("it is now")) })
	if err != nil {
		log.Fatal(err)
	}
	r, err := nc.Request("time.now", nil, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(r.Data))
}
