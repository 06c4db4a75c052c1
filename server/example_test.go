package server_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/server"
)

// A broker from a configuration, with every service it names, in one
// call; Shutdown also closes the store.
func ExampleStart() {
	cfg, err := config.Parse([]byte(`
port: 0                       # a free port
mqtt { port: 0 }
authorization { users [ {user: app, password: secret} ] }
`), "busbar.conf")
	if err != nil {
		panic(err)
	}
	s, err := server.Start(cfg, server.Options{})
	if err != nil {
		panic(err)
	}
	defer s.Shutdown(context.Background())
	for _, l := range s.Listeners() {
		fmt.Println(l.Name)
	}
	nc, err := nats.Connect("", nats.InProcessServer(natsproto.InProcess(s.Broker())), nats.UserInfo("app", "secret"))
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	sub, _ := nc.SubscribeSync("greet")
	_ = nc.Publish("greet", []byte("hello"))
	m, _ := sub.NextMsg(time.Second)
	fmt.Println(string(m.Data))
	// Output:
	// nats
	// mqtt
	// hello
}
