package transport_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/transport"
)

// lines is a small custom transport: every line "SUBJECT PAYLOAD" a peer
// sends is published. transport.Listener gives it Listen, Addr, Close and
// the accept loop with back-off.
type lines struct{ transport.Listener }

var _ transport.Transport = (*lines)(nil)

func newLines(host string, port int) (*lines, error) {
	t := &lines{}
	if _, err := t.Setup("lines", host, port, nil); err != nil { // nil: no TLS
		return nil, err
	}
	return t, nil
}

func (t *lines) Name() string { return "lines" }

func (t *lines) Serve(ctx context.Context, b *broker.Broker) error {
	return t.Accept(ctx, b.Go, func(c net.Conn) { // b.Go: Shutdown waits for it
		defer c.Close()
		defer context.AfterFunc(ctx, func() { _ = c.Close() })() // closed at Shutdown
		pub, err := b.Local("lines " + c.RemoteAddr().String())
		if err != nil {
			return
		}
		defer pub.Close(nil)
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			subj, payload, _ := strings.Cut(sc.Text(), " ")
			if err := pub.Publish(subj, []byte(payload)); err != nil {
				return
			}
		}
	})
}

// A custom transport built on transport.Listener, started and stopped by
// the broker like the built-in ones.
func Example() {
	b, err := broker.New(broker.Options{})
	if err != nil {
		panic(err)
	}
	t, err := newLines("127.0.0.1", 0) // port 0: a free port
	if err != nil {
		panic(err)
	}
	if err := t.Listen(); err != nil {
		panic(err)
	}
	if err := b.Start(t); err != nil {
		panic(err)
	}
	app, _ := b.Local("app")
	got := make(chan *broker.Message, 2)
	_, _ = app.ChanSubscribe("metrics.>", got)

	c, err := net.Dial("tcp", t.Addr().String())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprint(c, "metrics.cpu 0.42\nmetrics.mem 512M\n")
	for range 2 {
		m := <-got
		fmt.Printf("%s: %s\n", m.Subject, m.Payload)
	}
	fmt.Println("shutdown:", b.Shutdown(context.Background()))
	// Output:
	// metrics.cpu: 0.42
	// metrics.mem: 512M
	// shutdown: <nil>
}

// A listener's TLS is loaded before anything listens: a missing
// certificate is an error naming the file.
func ExampleTLSOptions() {
	tlsOpts := &transport.TLSOptions{CertFile: "no-such-cert.pem", KeyFile: "no-such-key.pem", Verify: true}
	_, err := tlsOpts.Config()
	fmt.Println(errors.Is(err, transport.ErrTLSConfig))
	fmt.Println(err)
	// Output:
	// true
	// transport: invalid TLS configuration: load cert_file no-such-cert.pem / key_file no-such-key.pem: open no-such-cert.pem: no such file or directory
}
