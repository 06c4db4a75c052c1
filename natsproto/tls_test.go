package natsproto_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/busbar/busbar/broker"
	"github.com/busbar/busbar/internal/testcert"
	"github.com/busbar/busbar/natsproto"
	"github.com/busbar/busbar/transport"
)

func startTLS(t *testing.T, to *transport.TLSOptions) *server {
	t.Helper()
	b, err := broker.New(broker.Options{})
	require.NoError(t, err)
	nt, err := natsproto.New(natsproto.Options{Host: "127.0.0.1", TLS: to})
	require.NoError(t, err)
	require.NoError(t, nt.Listen())
	require.NoError(t, b.Start(nt))
	s := &server{b: b, t: nt}
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

func TestTLSListenerWithNatsGo(t *testing.T) {
	certs := testcert.Write(t)
	for _, first := range []bool{false, true} {
		name := map[bool]string{false: "info first", true: "handshake first"}[first]
		t.Run(name, func(t *testing.T) {
			s := startTLS(t, &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, HandshakeFirst: first})
			opts := []nats.Option{nats.Secure(&tls.Config{RootCAs: certs.Pool, MinVersion: tls.VersionTLS12})}
			if first {
				opts = append(opts, nats.TLSHandshakeFirst())
			}
			nc, err := nats.Connect("tls://"+s.t.Addr().String(), opts...)
			require.NoError(t, err)
			defer nc.Close()
			sub, _ := nc.SubscribeSync("secure")
			require.NoError(t, nc.Publish("secure", []byte("over tls")))
			m, err := sub.NextMsg(5 * time.Second)
			require.NoError(t, err)
			require.Equal(t, "over tls", string(m.Data))
			require.True(t, nc.TLSRequired())
		})
	}
}

func TestTLSVerifyRequiresClientCertificate(t *testing.T) {
	certs := testcert.Write(t)
	s := startTLS(t, &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CA, Verify: true, Timeout: time.Second})
	_, err := nats.Connect("tls://"+s.t.Addr().String(), nats.Secure(&tls.Config{RootCAs: certs.Pool}), nats.NoReconnect())
	require.Error(t, err, "no client certificate: refused")

	nc, err := nats.Connect("tls://"+s.t.Addr().String(), nats.RootCAs(certs.CA), nats.ClientCert(certs.ClientCert, certs.ClientKey))
	require.NoError(t, err)
	defer nc.Close()
	require.NoError(t, nc.Flush())
}

func TestTLSConfigErrors(t *testing.T) {
	_, err := natsproto.New(natsproto.Options{TLS: &transport.TLSOptions{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent-key.pem"}})
	require.ErrorIs(t, err, transport.ErrTLSConfig)
	require.ErrorContains(t, err, "/nonexistent.pem")
	_, err = natsproto.New(natsproto.Options{TLS: &transport.TLSOptions{}})
	require.ErrorContains(t, err, "cert_file and key_file are both required")
	certs := testcert.Write(t)
	_, err = natsproto.New(natsproto.Options{TLS: &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, MinVersion: "1.0"}})
	require.ErrorContains(t, err, "min_version")
}

// A client that reads INFO on a TLS listener and never starts the
// handshake gets nats-server's -ERR once the TLS timeout passes, then
// the connection closes.
func TestTLSRequiredAfterHandshakeTimeout(t *testing.T) {
	certs := testcert.Write(t)
	s := startTLS(t, &transport.TLSOptions{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, Timeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", s.t.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	br := bufio.NewReader(c)
	info, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, info, `"tls_required":true`)
	rest, err := io.ReadAll(br)
	require.NoError(t, err, "closed after the -ERR")
	require.Equal(t, "-ERR 'Secure Connection - TLS Required'\r\n", string(rest))
}
