package leafnode_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/leafnode"
)

// Example joins an embedded broker to a NATS cluster as a leaf node: one
// remote with two hub URLs (the link rotates between them and adds the
// cluster's other leafnode URLs it learns), and one remote through a
// hub's websocket port. Broker.Start runs the links in the background;
// Stats reports them (no hub is running here, so they are not up).
func Example() {
	b, err := broker.New(broker.Options{ServerName: "edge-1"}) // the leaf name: unique per instance
	if err != nil {
		fmt.Println(err)
		return
	}
	svc, err := leafnode.New(leafnode.Options{
		Remotes: []leafnode.Remote{
			{URLs: []string{"nats-leaf://127.0.0.1:1", "nats-leaf://127.0.0.1:2"}, NoRandomize: true, DenyExports: []string{"internal.>"}},
			{URLs: []string{"ws://127.0.0.1:3"}, WSCompression: true},
		},
		Reconnect: 2 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := b.Start(svc); err != nil {
		fmt.Println(err)
		return
	}
	for _, st := range svc.Stats() {
		fmt.Println(st.URLs, st.Account, "up:", st.Up)
	}
	_, err = leafnode.New(leafnode.Options{Remotes: []leafnode.Remote{{URLs: []string{"http://hub:7422"}}}})
	fmt.Println(errors.Is(err, leafnode.ErrBadURL))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.Shutdown(ctx)
	// Output:
	// [nats-leaf://127.0.0.1:1 nats-leaf://127.0.0.1:2] $G up: false
	// [ws://127.0.0.1:3] $G up: false
	// true
}
