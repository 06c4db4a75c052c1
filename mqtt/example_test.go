package mqtt_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/mqtt"
)

// The MQTT listener on a broker: an MQTT 5.0 client (paho.golang) and an
// in-process client share one namespace, topic sensors/t1 being subject
// sensors.t1.
func Example() {
	b, err := broker.New(broker.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())
	mt, err := mqtt.New(mqtt.Options{Host: "127.0.0.1"}) // Port 0: a free port
	if err != nil {
		panic(err)
	}
	if err := mt.Listen(); err != nil {
		panic(err)
	}
	if err := b.Start(mt); err != nil {
		panic(err)
	}

	app, _ := b.Local("app")
	seen := make(chan *broker.Message, 1)
	_, _ = app.ChanSubscribe("sensors.>", seen)

	conn, err := net.Dial("tcp", mt.Addr().String())
	if err != nil {
		panic(err)
	}
	got := make(chan *paho.Publish, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "thermometer-1", CleanStart: true, KeepAlive: 30}); err != nil {
		panic(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "display/#", QoS: 1}}}); err != nil {
		panic(err)
	}

	// MQTT → NATS subject space; QoS 1 returns once busbar acknowledged.
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "sensors/t1", QoS: 1, Payload: []byte("21.5")}); err != nil {
		panic(err)
	}
	m := <-seen
	fmt.Printf("in-process got %s: %s\n", m.Subject, m.Payload)

	// In-process → MQTT, delivered at the subscription's QoS.
	_ = app.Publish("display.hall", []byte("hello"))
	p := <-got
	fmt.Printf("mqtt got %s: %s (QoS %d)\n", p.Topic, p.Payload, p.QoS)
	// Output:
	// in-process got sensors.t1: 21.5
	// mqtt got display/hall: hello (QoS 1)
}
