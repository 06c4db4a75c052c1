package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/config"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
)

// The block is known to every configuration this program reads, from
// its first line: registering is all a host does for config.Load,
// server.Start and a reload to handle `unix {}` like `mqtt {}`.
func init() {
	config.RegisterTransport(config.TransportBlock{
		Name: "unix", Aliases: []string{"unix_socket"},
		Decode: decodeUnix,
		New:    newUnix,
	})
}

// Options is the `unix {}` block.
type Options struct {
	Path string      // path: the socket file (required)
	Mode fs.FileMode // mode: its permission bits, octal ("0660"); default 0600
}

// decodeUnix reads `unix { path: "/run/busbar.sock", mode: "0660" }`.
// A wrong value is reported at its position by the Block's readers (or
// b.Errorf); the error returned is reported at the block.
func decodeUnix(b *config.Block) (any, error) {
	o := &Options{Mode: 0o600}
	if !b.Fields(map[string]config.Field{
		"path": b.String(&o.Path),
		"mode": func(e *config.Entry) {
			var s string
			b.String(&s)(e)
			m, err := strconv.ParseUint(s, 8, 32)
			if err != nil || m > 0o777 {
				b.Errorf(e.Value.Pos, "mode: %q is not permission bits in octal, such as \"0660\"", s)
				return
			}
			o.Mode = fs.FileMode(m)
		},
	}) {
		return nil, nil // not a {} block: already reported
	}
	if o.Path == "" {
		return nil, errors.New("path is required (the socket file to create)")
	}
	return o, nil
}

// Transport serves the NATS protocol on a Unix socket: transport.Listener
// runs the accept loop, natsproto runs the protocol on each connection
// (as it does for WebSocket ones), the broker authenticates and routes.
type Transport struct {
	transport.Listener
	opts Options
	nats *natsproto.Transport
}

var _ transport.Transport = (*Transport)(nil)

// newUnix builds the transport from the decoded block. env.Config is the
// rest of the file: NATS.Nonce says whether the authentication configured
// (NKEY users, operator mode) needs a nonce in INFO.
func newUnix(opts any, env *config.Env) (transport.Transport, error) {
	o := opts.(*Options)
	nt, err := natsproto.New(natsproto.Options{Host: o.Path, Nonce: env.Config.NATS.Nonce})
	if err != nil {
		return nil, err
	}
	t := &Transport{opts: *o, nats: nt}
	t.Proto, t.Address = "unix", o.Path
	return t, nil
}

// Name is "unix".
func (t *Transport) Name() string { return "unix" }

// Listen creates the socket file with its mode. A socket file left by a
// process that died is replaced; a live one is "address already in use".
func (t *Transport) Listen() error {
	if err := removeStale(t.opts.Path); err != nil {
		return fmt.Errorf("unix: listen %s: %w", t.opts.Path, err)
	}
	ln, err := net.Listen("unix", t.opts.Path) // removed again by Close
	if err != nil {
		return fmt.Errorf("unix: listen %s: %w", t.opts.Path, err)
	}
	if err := os.Chmod(t.opts.Path, t.opts.Mode); err != nil {
		_ = ln.Close()
		return fmt.Errorf("unix: chmod %s: %w", t.opts.Path, err)
	}
	t.UseListener(ln)
	return nil
}

// Serve accepts connections until Close; each runs the NATS protocol
// on a goroutine the broker tracks, and Shutdown closes it.
func (t *Transport) Serve(ctx context.Context, b *broker.Broker) error {
	t.Log = b.Logger()
	return t.Accept(ctx, b.Go, func(c net.Conn) {
		if uc, ok := c.(*net.UnixConn); ok {
			c = lingerConn{uc}
		}
		_ = t.nats.ServeConn(ctx, b, c, transport.ConnOptions{})
	})
}

// lingerTime bounds how long a closing connection waits for its client.
const lingerTime = 100 * time.Millisecond

// lingerConn closes its side first and lets the client read what was
// written before the socket goes. On a Unix socket a write to a closed
// peer fails at once (a TCP one is buffered), and nats.go writes CONNECT
// and PING apart: without the wait a refused login could read "broken
// pipe" instead of the server's -ERR 'Authorization Violation'.
type lingerConn struct{ *net.UnixConn }

func (c lingerConn) Close() error {
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, c.UnixConn) // until the client closes, or the deadline
	return c.UnixConn.Close()
}

// ErrNotSocket: the path exists and is not a socket, so it is left alone.
var ErrNotSocket = errors.New("unix: the path exists and is not a socket")

// removeStale removes path when it is a socket nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return ErrNotSocket
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return syscall.EADDRINUSE
	}
	return os.Remove(path)
}
