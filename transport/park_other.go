//go:build !linux

package transport

import "github.com/busbar/busbar/broker"

// parking: idle connections park on Linux only; elsewhere every
// connection keeps its read-loop goroutine.
type parking struct{}

func (c *Conn) enroll() bool                  { return false }
func (c *Conn) parkNow() bool                 { return false }
func (c *Conn) wake()                         {}
func (c *Conn) leave()                        {}
func (c *Conn) parkTimeout(error) parkVerdict { return endRead }
func parked(*broker.Broker) int               { return 0 }
