package config_test

import (
	"fmt"

	"github.com/busbar/busbar/config"
)

func ExampleParse() {
	cfg, err := config.Parse([]byte(`
listen: 127.0.0.1:4333
max_payload: 2MB
authorization {
  perms = {publish: ["orders.>"]}
  users [ {user: app password: secret permissions: $perms} ]
}
cluster { port: 6222 }
`), "busbar.conf")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.NATS.Host, cfg.NATS.Port, cfg.Broker.MaxPayload)
	fmt.Println(cfg.Auth.Users[0].Name, cfg.Auth.Users[0].Perms.Publish.Allow)
	for _, w := range cfg.Warnings {
		fmt.Println(w)
	}

	_, err = config.Parse([]byte("port: 4222\nprot: 4223\n"), "typo.conf")
	fmt.Println(err)
	// Output:
	// 127.0.0.1 4333 2097152
	// app [orders.>]
	// busbar.conf:8:1: warning: "cluster": busbar does not implement this nats-server option; ignored
	// typo.conf:2:1: unknown key "prot"
}
