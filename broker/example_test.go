package broker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/broker"
)

// A broker with no listener at all: in-process clients publish, subscribe
// and make requests on it. Transports (natsproto, mqtt, websocket) are
// added with Start when sockets are wanted.
func Example() {
	b, err := broker.New(broker.Options{}) // zero Options: nats-server's defaults, in memory
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())

	worker, _ := b.Local("worker")
	// Handlers of one Local run one at a time, in order, on its own goroutine.
	_, err = worker.Subscribe("orders.*", func(m *broker.Message) {
		if len(m.Reply) > 0 {
			_ = worker.Publish(string(m.Reply), append([]byte("accepted "), m.Payload...))
		}
	})
	if err != nil {
		panic(err)
	}

	app, _ := b.Local("app")
	audit := make(chan *broker.Message, 4)
	if _, err := app.ChanSubscribe("orders.>", audit); err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	reply, err := app.Request(ctx, "orders.new", []byte("#42"))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(reply.Payload))
	m := <-audit
	fmt.Printf("audit saw %s: %s\n", m.Subject, m.Payload)

	_, err = app.Request(ctx, "billing.run", nil)
	fmt.Println(errors.Is(err, broker.ErrNoResponders), err)
	// Output:
	// accepted #42
	// audit saw orders.new: #42
	// true broker: no responders
}
