package auth_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/broker"
)

// The built-in users of a configuration, with the host application's own
// Authenticator chained in front: it accepts its devices' keys and leaves
// everything else to the next one. The broker runs the result for every
// transport.
func Example() {
	builtin, err := auth.New(auth.Options{Users: []auth.User{
		{Name: "ops", Password: "$2a$04$MEFi3LGwzIbqFEO/W.ysI.yhVd1XDXegpW3CK6a9ntJxQBxYodP3C"}, // bcrypt of "opspw"
		{Name: "shop", Password: "shop-pw", Perms: &auth.Permissions{
			Publish: &auth.SubjectPermission{Allow: []string{"orders.>"}},
		}},
	}})
	if err != nil {
		panic(err)
	}
	devices := auth.AuthenticatorFunc(func(_ context.Context, c *auth.Credentials) (*auth.Identity, bool, error) {
		name, ok := strings.CutPrefix(c.Token, "device-key-")
		if !ok || c.Conn != auth.ConnMQTT {
			return nil, false, nil // not ours: the chain asks the next one
		}
		return &auth.Identity{Name: "device-" + name, Perms: &auth.Permissions{
			Publish: &auth.SubjectPermission{Allow: []string{"sensors." + name + ".>"}},
		}}, true, nil
	})
	a := auth.Chain(devices, builtin)

	for _, c := range []*auth.Credentials{
		{Conn: auth.ConnMQTT, Token: "device-key-t1"},
		{Conn: auth.ConnStandard, User: "ops", Password: "opspw"},
		{Conn: auth.ConnStandard, User: "shop", Password: "shop-pw"},
		{Conn: auth.ConnStandard, User: "shop", Password: "guess"},
	} {
		id, ok, err := a.Authenticate(context.Background(), c)
		if !ok || err != nil {
			fmt.Printf("%v: refused\n", c) // Credentials print with secrets redacted
			continue
		}
		fmt.Printf("%s: may publish sensors.t1.temp=%v orders.new=%v\n", id.Name,
			id.Perms.CanPublish([]byte("sensors.t1.temp")), id.Perms.CanPublish([]byte("orders.new")))
	}

	b, err := broker.New(broker.Options{Authenticator: a}) // every transport of b uses it
	if err != nil {
		panic(err)
	}
	defer b.Shutdown(context.Background())
	fmt.Println("auth required:", b.AuthRequired())
	// Output:
	// device-t1: may publish sensors.t1.temp=true orders.new=false
	// ops: may publish sensors.t1.temp=true orders.new=true
	// shop: may publish sensors.t1.temp=false orders.new=true
	// [conn=STANDARD user=shop password=[REDACTED]]: refused
	// auth required: true
}
