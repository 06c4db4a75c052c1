package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDeliveredMessagesLeaveNoMarkers: every QoS 1 message sent to a
// persistent session is written to the hub and deleted when acknowledged;
// the deletion's marker expires, so the state bucket holds what is live
// (the session, its subscription, its owner), not one marker per message
// ever delivered. The same for client ids that came and went.
func TestDeliveredMessagesLeaveNoMarkers(t *testing.T) {
	hubs := jsCluster(t)
	a := startInstance(t, "a", []string{hubs[0].LeafURL}, nil)
	bb := startInstance(t, "b", []string{hubs[1].LeafURL}, nil)
	got := make(chan struct{}, 10)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(bb.mqtt).SetClientID("keeper").SetCleanSession(false).
		SetAutoReconnect(false).SetDefaultPublishHandler(func(paho.Client, paho.Message) { got <- struct{}{} }))
	wait(t, sub.Connect())
	defer sub.Disconnect(0)
	wait(t, sub.Subscribe("m", 1, nil))
	const n = 200
	for i := range n {
		pub := mqttConnect(t, a.mqtt, fmt.Sprintf("p%d", i), true, nil) // ids that come and go
		wait(t, pub.Publish("m", 1, false, "x"))
		pub.Disconnect(0)
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
	nc, err := nats.Connect(hubs[0].ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the state bucket down to the live records", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_BUSBAR_MQTT")
		if err != nil {
			return err
		}
		// keeper's session, subscription and owner records; before
		// markers expired, n for the messages and n for the publishers.
		if m := st.CachedInfo().State.Msgs; m > 10 {
			return fmt.Errorf("%d messages in the bucket's stream", m)
		}
		return nil
	})
}
