package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/monitor"
)

// Example starts the application on free ports, connects a NATS client
// over TCP, a NATS client over WebSocket through the app's /ws route and
// an MQTT device, and follows one reading from the device to all of them.
// Ports change from run to run, so only what they carry is printed.
func Example() {
	a, err := Start(Config{Host: "127.0.0.1"}) // every port 0: free ones
	if err != nil {
		panic(err)
	}
	httpURL := "http://" + a.HTTPLn.Addr().String()

	tcpConn, tcp := subscribe("nats://"+a.NATS.Addr().String(), "sensors.>")
	defer tcpConn.Close()
	wsConn, ws := subscribe("ws://"+a.HTTPLn.Addr().String()+"/ws", "sensors.>") // through the app's mux
	defer wsConn.Close()

	// An MQTT client over WebSocket through the app's /ws/mqtt route.
	wsDevice, wsMQTT := mqttSubscribe("ws://"+a.HTTPLn.Addr().String()+"/ws/mqtt", "sensors/#")
	defer wsDevice.Disconnect(100)

	device := paho.NewClient(paho.NewClientOptions().
		AddBroker("tcp://" + a.MQTT.Addr().String()).SetClientID("thermometer-1"))
	if t := device.Connect(); !t.WaitTimeout(3*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt connect: ", t.Error()))
	}
	// QoS 1: Publish completes on PUBACK, after busbar routed the message.
	if t := device.Publish("sensors/t1", 1, false, "21.5"); !t.WaitTimeout(3*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt publish: ", t.Error()))
	}

	for _, c := range []struct {
		name string
		ch   chan *nats.Msg
	}{{"nats tcp", tcp}, {"nats ws ", ws}} {
		select {
		case m := <-c.ch:
			fmt.Printf("%s  %s: %s\n", c.name, m.Subject, m.Data)
		case <-time.After(3 * time.Second):
			fmt.Println(c.name, "received nothing")
		}
	}
	select {
	case m := <-wsMQTT:
		fmt.Printf("mqtt ws   %s: %s\n", m.Topic(), m.Payload())
	case <-time.After(3 * time.Second):
		fmt.Println("mqtt ws received nothing")
	}
	fmt.Print("app /latest: ", get(httpURL+"/latest"))

	var v monitor.Varz
	if err := json.Unmarshal([]byte(get(httpURL+"/monitor/varz")), &v); err != nil {
		panic(err)
	}
	fmt.Printf("varz: nats=%d mqtt=%d websocket=%d\n",
		v.Transports["nats"].Connections, v.Transports["mqtt"].Connections, v.Transports["websocket"].Connections)

	device.Disconnect(100) // waits up to 100 ms for in-flight work
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("shutdown:", a.Shutdown(ctx))
	_, err = http.Get(httpURL + "/latest")
	fmt.Println("http after shutdown refused:", err != nil)
	// Output:
	// nats tcp  sensors.t1: 21.5
	// nats ws   sensors.t1: 21.5
	// mqtt ws   sensors/t1: 21.5
	// app /latest: sensors.t1 21.5
	// varz: nats=1 mqtt=1 websocket=2
	// shutdown: <nil>
	// http after shutdown refused: true
}

// subscribe connects nats.go to url and subscribes to subj; the
// subscription is in place when it returns.
func subscribe(url, subj string) (*nats.Conn, chan *nats.Msg) {
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err != nil {
		panic(err)
	}
	ch := make(chan *nats.Msg, 8)
	if _, err := nc.ChanSubscribe(subj, ch); err != nil {
		panic(err)
	}
	if err := nc.Flush(); err != nil {
		panic(err)
	}
	return nc, ch
}

// mqttSubscribe connects paho to url (ws://host/path) and subscribes to
// filter; the subscription is in place when it returns.
func mqttSubscribe(url, filter string) (paho.Client, chan paho.Message) {
	ch := make(chan paho.Message, 8)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("dashboard-ws"))
	if t := c.Connect(); !t.WaitTimeout(3*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt over websocket connect: ", t.Error()))
	}
	if t := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { ch <- m }); !t.WaitTimeout(3*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt subscribe: ", t.Error()))
	}
	return c, ch
}

func get(url string) string {
	resp, err := http.Get(url)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		panic(err)
	}
	return string(b)
}
