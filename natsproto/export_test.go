package natsproto

import "github.com/busbar/busbar/broker"

// SidCount is the number of sids NATS connections of b remember.
func SidCount(b *broker.Broker) int {
	n := 0
	for _, c := range b.Clients() {
		if nc, ok := c.(*conn); ok {
			nc.mu.Lock()
			n += len(nc.subs)
			nc.mu.Unlock()
		}
	}
	return n
}
