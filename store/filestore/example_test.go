package filestore_test

import (
	"context"
	"fmt"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
	"github.com/busbar/busbar/store/filestore"
)

// run starts a broker on the durable store in dir with an MQTT listener,
// calls f with the listener's URL, then shuts the broker down and closes
// the store, as a host application does on exit.
func run(dir string, f func(url string)) {
	st, err := filestore.Open(dir, filestore.Options{}) // replays the log
	if err != nil {
		panic(err)
	}
	defer st.Close() // after the broker: it may still write while shutting down
	b, err := broker.New(broker.Options{Store: st})
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())
	mt, _ := mqtt.New(mqtt.Options{Host: "127.0.0.1"}) // Port 0: a free port
	if err := mt.Listen(); err != nil {
		panic(err)
	}
	if err := b.Start(mt); err != nil {
		panic(err)
	}
	f("tcp://" + mt.Addr().String())
}

func connect(url, id string, h paho.MessageHandler) paho.Client {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetDefaultPublishHandler(h))
	if t := c.Connect(); !t.WaitTimeout(3*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("connect: ", t.Error()))
	}
	return c
}

// A retained message acknowledged by one broker is still there for the
// next one that opens the same directory.
func Example() {
	dir, err := os.MkdirTemp("", "busbar-store")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	run(dir, func(url string) {
		c := connect(url, "controller", nil)
		defer c.Disconnect(0)
		// QoS 1: the PUBACK comes after the record is fdatasync'ed.
		t := c.Publish("config/mode", 1, true, "eco")
		t.WaitTimeout(3 * time.Second)
		fmt.Println("published:", t.Error())
	})

	run(dir, func(url string) { // a new broker, a new process in real life
		got := make(chan paho.Message, 1)
		c := connect(url, "display", func(_ paho.Client, m paho.Message) { got <- m })
		defer c.Disconnect(0)
		c.Subscribe("config/#", 1, nil).WaitTimeout(3 * time.Second)
		select {
		case m := <-got:
			fmt.Printf("after restart: %s = %s (retained %v)\n", m.Topic(), m.Payload(), m.Retained())
		case <-time.After(3 * time.Second):
			fmt.Println("after restart: nothing")
		}
	})
	// Output:
	// published: <nil>
	// after restart: config/mode = eco (retained true)
}
