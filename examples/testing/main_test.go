package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/busbar/busbar/auth"
	"github.com/busbar/busbar/busbartest"
)

// TestPriceService is the test a host app writes: one line for the
// broker, the service under test on an in-process client, and a client
// over TCP with its own user and permissions.
func TestPriceService(t *testing.T) {
	s := busbartest.Start(t, busbartest.Options{Users: []auth.User{
		{Name: "svc", Password: "svc-pw"},
		{Name: "shop", Password: "shop-pw", Perms: &auth.Permissions{
			Publish:   &auth.SubjectPermission{Allow: []string{"price.*"}},
			Subscribe: &auth.SubjectPermission{Allow: []string{"_INBOX.>"}},
		}},
	}})
	svc := s.Conn(t, nats.UserInfo("svc", "svc-pw"))
	if _, err := Serve(svc); err != nil {
		t.Fatal(err)
	}
	if err := svc.Flush(); err != nil { // the subscription is in place before anyone asks
		t.Fatal(err)
	}
	shop, err := nats.Connect(s.NATSURL, nats.UserInfo("shop", "shop-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer shop.Close()
	for item, want := range map[string]string{"pear": "0.55", "kiwi": "unknown"} {
		m, err := shop.Request("price."+item, nil, 2*time.Second)
		if err != nil || string(m.Data) != want {
			t.Fatalf("price of %s: %v %v, want %s", item, m, err, want)
		}
	}
}

func Example() {
	main()
	// Output: apple costs 0.40
}
