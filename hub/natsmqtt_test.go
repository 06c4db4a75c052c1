package hub_test

import (
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// retainedSet subscribes to filter on url and returns the retained
// messages replayed (topic → payload and QoS): all of them, since a
// message the same connection publishes after the SUBACK reaches it after
// the replay.
func retainedSet(url, id, filter, sentinel string) (map[string]string, error) {
	var mu sync.Mutex
	set := map[string]string{}
	done := make(chan struct{})
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect to %s: %v", url, tok.Error())
	}
	defer c.Disconnect(0)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		if m.Topic() == sentinel {
			close(done)
			return
		}
		if m.Retained() {
			mu.Lock()
			set[m.Topic()] = fmt.Sprintf("%s q%d", m.Payload(), m.Qos())
			mu.Unlock()
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("subscribe: %v", tok.Error())
	}
	if tok := c.Publish(sentinel, 0, false, "end"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("sentinel: %v", tok.Error())
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("sentinel not delivered")
	}
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(set), nil
}

func waitRetained(t *testing.T, where, url, prefix string, want map[string]string) {
	t.Helper()
	n := 0
	waitFor(t, 30*time.Second, "retained messages on "+where, func() error {
		n++
		got, err := retainedSet(url, fmt.Sprintf("check-%d", n), prefix+"/#", prefix+"/end-of-replay")
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})
}

// TestRetainedSharedWithNATSServerLeaves: a busbar instance and a
// nats-server 2.15.2 leaf with mqtt { js_domain: hub } on the same hub
// share retained messages through $MQTT_rmsgs: set on either is replayed
// on the other (with its QoS), cleared on either is gone on both.
func TestRetainedSharedWithNATSServerLeaves(t *testing.T) {
	hubs := jsCluster(t)
	bb := startInstance(t, "busbar", []string{hubs[0].LeafURL}, nil)
	ns := natsLeaf(t, "leaf-n", hubs[1].LeafURL)

	pn := mqttConnect(t, ns, "pub-n", true, nil)
	pb := mqttConnect(t, bb.mqtt, "pub-b", true, nil)
	// nats-server → busbar.
	wait(t, pn.Publish("shared/n", 1, true, "n1"))
	waitRetained(t, "busbar", bb.mqtt, "shared", map[string]string{"shared/n": "n1 q1"})
	// busbar → nats-server.
	wait(t, pb.Publish("shared/b", 0, true, "b1"))
	waitRetained(t, "nats-server", ns, "shared", map[string]string{"shared/n": "n1 q1", "shared/b": "b1 q0"})
	// Cleared on busbar: gone on nats-server.
	wait(t, pb.Publish("shared/n", 1, true, ""))
	wait(t, pb.Publish("shared/b", 1, true, "b2"))
	waitRetained(t, "nats-server", ns, "shared", map[string]string{"shared/b": "b2 q1"})
	// Cleared on nats-server: gone on busbar.
	wait(t, pn.Publish("shared/b", 1, true, ""))
	wait(t, pn.Publish("shared/n2", 1, true, "n2"))
	waitRetained(t, "busbar", bb.mqtt, "shared", map[string]string{"shared/n2": "n2 q1"})
}
