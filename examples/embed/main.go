// Command embed runs a busbar broker inside the program, with in-process
// clients only: no socket is opened.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/busbar/busbar/broker"
)

func main() {
	b, err := broker.New(broker.Options{}) // the zero Options work
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	svc, err := b.Local("greeter")
	if err != nil {
		log.Fatal(err)
	}
	// A service answering requests on greet.<name>.
	_, err = svc.Subscribe("greet.*", func(m *broker.Message) {
		name := string(m.Subject[len("greet."):])
		_ = svc.Publish(string(m.Reply), []byte("hello, "+name))
	})
	if err != nil {
		log.Fatal(err)
	}

	app, err := b.Local("app")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	reply, err := app.Request(ctx, "greet.world", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply.Payload))

	if _, err := app.Request(ctx, "nobody.here", nil); err != nil {
		fmt.Println(err)
	}

	// Fire-and-forget publish to a channel subscriber.
	ch := make(chan *broker.Message, 1)
	if _, err := app.ChanSubscribe("events.>", ch); err != nil {
		log.Fatal(err)
	}
	if err := svc.Publish("events.started", []byte("up")); err != nil {
		log.Fatal(err)
	}
	m := <-ch
	fmt.Printf("%s: %s\n", m.Subject, m.Payload)
}
