package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
)

// Example starts the application from testdata/app.conf, then a NATS
// client of the file's users, an app user over the app's /ws and an MQTT
// device over the app's /ws/mqtt share one subject space; monitoring
// answers under the app's /monitor/.
func Example() {
	a, err := Start("testdata/app.conf", "127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	app := a.Ln.Addr().String()
	ops, err := nats.Connect("nats://"+a.Busbar.NATS().Addr().String(), nats.UserInfo("ops", "ops-pw"))
	if err != nil {
		panic(err)
	}
	defer ops.Close()
	sub, _ := ops.SubscribeSync("sensors.>")
	_ = ops.Flush()

	ann, err := nats.Connect("ws://"+app+"/ws", nats.Token("app-ann"))
	if err != nil {
		panic(err)
	}
	defer ann.Close()
	_ = ann.Publish("sensors.web", []byte("from the browser"))
	_ = ann.Flush() // through the broker before the MQTT publish below, so the order is fixed

	device := paho.NewClient(paho.NewClientOptions().AddBroker("ws://" + app + "/ws/mqtt").
		SetClientID("thermometer-1").SetUsername("ops").SetPassword("ops-pw"))
	if t := device.Connect(); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt: ", t.Error()))
	}
	defer device.Disconnect(50)
	if t := device.Publish("sensors/t1", 1, false, "21.5"); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
		panic(fmt.Sprint("mqtt: ", t.Error()))
	}
	for range 2 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %s\n", m.Subject, m.Data)
	}

	resp, err := http.Get("http://" + app + "/monitor/varz")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var v struct {
		Name string `json:"server_name"`
	}
	_ = json.Unmarshal(body, &v)
	fmt.Println("monitor:", v.Name)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println("shutdown:", a.Shutdown(ctx))
	// Output:
	// sensors.web: from the browser
	// sensors.t1: 21.5
	// monitor: hostapp
	// shutdown: <nil>
}
