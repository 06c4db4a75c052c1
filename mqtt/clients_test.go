package mqtt_test

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testpeer"
	"github.com/busbar/busbar/mqtt"
)

// TestPahoV311 drives the MQTT 3.1.1 side with eclipse/paho.mqtt.golang:
// QoS 0/1/2 both ways and a persistent session.
func TestPahoV311(t *testing.T) {
	e := start(t, broker.Options{}, mqtt.Options{})
	url := "tcp://" + e.mqtt.Addr().String()
	got := make(chan mqtt3.Message, 100)
	sub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(url).SetClientID("v3sub").SetCleanSession(true).SetProtocolVersion(4))
	tok := sub.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	defer sub.Disconnect(100)
	tok = sub.Subscribe("v3/#", 2, func(_ mqtt3.Client, m mqtt3.Message) { got <- m })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())

	pub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker(url).SetClientID("v3pub").SetProtocolVersion(4))
	tok = pub.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	defer pub.Disconnect(100)
	for qos := byte(0); qos <= 2; qos++ {
		tok = pub.Publish("v3/q"+strconv.Itoa(int(qos)), qos, false, "m")
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		select {
		case m := <-got:
			require.Equal(t, "v3/q"+strconv.Itoa(int(qos)), m.Topic())
			require.Equal(t, qos, m.Qos())
		case <-time.After(5 * time.Second):
			t.Fatalf("QoS %d not delivered", qos)
		}
	}
}

// TestMosquittoClients is the smoke test with Debian's mosquitto_pub and
// mosquitto_sub.
func TestMosquittoClients(t *testing.T) {
	subBin := testpeer.Need(t, "mosquitto_sub", "mosquitto-clients")
	pubBin := testpeer.Need(t, "mosquitto_pub", "mosquitto-clients")
	e := start(t, broker.Options{}, mqtt.Options{})
	host, port := "127.0.0.1", portOf(e)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sub := exec.CommandContext(ctx, subBin, "-h", host, "-p", port, "-V", v, "-t", "smoke/#", "-q", "1", "-C", "1", "-v", "-i", "s-"+v)
			var out strings.Builder
			sub.Stdout = &out
			require.NoError(t, sub.Start())
			// Publish until the subscriber has subscribed and got one.
			done := make(chan error, 1)
			go func() { done <- sub.Wait() }()
			for {
				pub := exec.CommandContext(ctx, pubBin, "-h", host, "-p", port, "-V", v, "-t", "smoke/"+v, "-m", "hello", "-q", "1")
				b, err := pub.CombinedOutput()
				require.NoError(t, err, string(b))
				select {
				case err := <-done:
					require.NoError(t, err)
					require.Equal(t, "smoke/"+v+" hello\n", out.String())
					return
				case <-time.After(200 * time.Millisecond):
				}
			}
		})
	}
}

func portOf(e *env) string {
	a := e.mqtt.Addr().String()
	return a[strings.LastIndexByte(a, ':')+1:]
}
