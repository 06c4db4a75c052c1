package broker

import (
	"github.com/busbar/busbar/auth"
)

// Client is one live connection of any transport, as the router sees it.
// Each protocol's connection type implements it.
type Client interface {
	// Deliver enqueues m for sub. It never blocks and never writes the
	// socket; it runs on the publisher's goroutine. m may be borrowed (see
	// Message). It returns false when the client is over its pending limit:
	// the broker then closes it as a slow consumer.
	Deliver(sub *Subscription, m *Message) bool
	// Wake asks the client's writer to flush. The broker calls it once per
	// touched client per publish batch, after the Deliver calls.
	Wake()
	// Close ends the connection; reason is reported to the peer when the
	// protocol can carry it. Safe to call more than once, from any goroutine.
	Close(reason error)
}

// ClientInfo describes a connection for logs, monitoring and permissions.
// Immutable after Connect.
type ClientInfo struct {
	ID        uint64
	Transport string        // "nats", "mqtt", "websocket", "inprocess"
	ConnType  auth.ConnType // what allowed_connection_types checks
	Name      string
	Remote    string
	Identity  *auth.Identity
}

// Batch collects the clients a publisher touched during one read, so each
// is woken once, however many messages it got. Owned by one publisher goroutine;
// the zero value is ready.
type Batch struct {
	clients []Client
}

func (b *Batch) add(c Client) {
	n := len(b.clients)
	if n > 0 && b.clients[n-1] == c {
		return
	}
	if n <= 32 {
		for _, x := range b.clients {
			if x == c {
				return
			}
		}
	} else {
		// Large fan-out: a duplicate wake-up is cheaper than a set.
		for _, x := range b.clients[n-8:] {
			if x == c {
				return
			}
		}
	}
	b.clients = append(b.clients, c)
}

// Flush wakes every touched client once and empties the batch.
func (b *Batch) Flush() {
	for i, c := range b.clients {
		c.Wake()
		b.clients[i] = nil
	}
	b.clients = b.clients[:0]
}

// Len reports how many distinct clients wait for a wake-up.
func (b *Batch) Len() int { return len(b.clients) }
