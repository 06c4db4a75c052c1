//go:build !linux

package transport

import "net"

// rawRead: reading without a buffer while waiting is implemented on Linux
// only; other platforms keep a small read buffer per connection.
type rawRead struct{}

func (r *rawRead) init(Sink)                     {}
func (r *rawRead) ok() bool                      { return false }
func (r *rawRead) markSetUp()                    {}
func (r *rawRead) read(net.Conn) ([]byte, error) { return nil, nil }
func (r *rawRead) take() []byte                  { return nil }
func (r *rawRead) release()                      {}
